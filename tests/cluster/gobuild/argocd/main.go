// The two Argo CD components the GitOps tests run (tests/cluster/argocd.py), dispatched by
// ARGOCD_BINARY_NAME like Argo CD's own cmd/main.go, which also links the API server, Dex,
// the CLI and the notification and ApplicationSet controllers: leaving those out keeps the
// build shorter. The commands are Argo CD's, unchanged.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	appcontroller "github.com/argoproj/argo-cd/v2/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v2/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v2/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v2/cmd/util"
)

func main() {
	var command *cobra.Command
	isCLI := false
	switch name := os.Getenv("ARGOCD_BINARY_NAME"); name {
	case "argocd-application-controller":
		command = appcontroller.NewCommand()
	case "argocd-repo-server":
		command = reposerver.NewCommand()
	case "argocd-git-ask-pass":
		command = gitaskpass.NewCommand()
		isCLI = true
	default:
		fmt.Fprintf(os.Stderr, "ARGOCD_BINARY_NAME=%q: want argocd-application-controller, argocd-repo-server or argocd-git-ask-pass\n", name)
		os.Exit(2)
	}
	util.SetAutoMaxProcs(isCLI)
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
