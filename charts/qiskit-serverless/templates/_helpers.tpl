{{/*
An image reference from {repository, tag, digest}: the digest pins it when given.
*/}}
{{- define "qso.image" -}}
{{- $image := index . 0 -}}
{{- $chart := index . 1 -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default $chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "qso.labels" -}}
app.kubernetes.io/name: qiskit-serverless-operator
app.kubernetes.io/part-of: qiskit-serverless
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The kinds without a namespace (everything else goes to the release's).
*/}}
{{- define "qso.clusterKinds" -}}
{{ list "ClusterRole" "ClusterRoleBinding" "APIService" "ValidatingAdmissionPolicy" "ValidatingAdmissionPolicyBinding" "CustomResourceDefinition" | toJson }}
{{- end -}}

{{/*
The Secret the S3 keys come from: the site's, the chart's own, or none (workload identity).
*/}}
{{- define "qso.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}
{{ .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKey -}}
qiskit-serverless-operator-s3
{{- end -}}
{{- end -}}

{{/*
A pod spec of manifests/base with the chart's values: images, resources, placement, the
Secrets it reads, security contexts.
*/}}
{{- define "qso.pod" -}}
{{- $pod := .pod -}}
{{- $ctx := .ctx -}}
{{- $component := .component -}}
{{- $v := index $ctx.Values $component -}}
{{- $image := include "qso.image" (list $ctx.Values.images.operator $ctx.Chart) -}}
{{- if $ctx.Values.imagePullSecrets }}
{{- $_ := set $pod "imagePullSecrets" $ctx.Values.imagePullSecrets }}
{{- end }}
{{- if $v.nodeSelector }}
{{- $_ := set $pod "nodeSelector" $v.nodeSelector }}
{{- end }}
{{- if $v.tolerations }}
{{- $_ := set $pod "tolerations" $v.tolerations }}
{{- end }}
{{- if not $ctx.Values.securityContext.fixedIds }}
{{- $_ := unset $pod.securityContext "runAsUser" }}
{{- $_ := unset $pod.securityContext "runAsGroup" }}
{{- end }}
{{- range $container := $pod.containers }}
{{- $_ := set $container "image" $image }}
{{- $_ := set $container "imagePullPolicy" $ctx.Values.images.pullPolicy }}
{{- $_ := set $container "resources" $v.resources }}
{{- $sources := list }}
{{- range $source := $container.envFrom }}
{{- if and $source.secretRef (eq $source.secretRef.name "qiskit-serverless-operator-s3") }}
{{- $s3 := include "qso.s3Secret" $ctx }}
{{- if $s3 }}
{{- $sources = append $sources (dict "secretRef" (dict "name" $s3)) }}
{{- end }}
{{- else if and $source.secretRef (eq $source.secretRef.name "qiskit-serverless-archive") }}
{{- if $ctx.Values.archive.existingSecret }}
{{- $sources = append $sources (dict "secretRef" (dict "name" $ctx.Values.archive.existingSecret)) }}
{{- end }}
{{- else }}
{{- $sources = append $sources $source }}
{{- end }}
{{- end }}
{{- $_ := set $container "envFrom" $sources }}
{{- if and (eq $component "operator") $ctx.Values.operator.watchNamespaces }}
{{- $args := $container.args }}
{{- range $ns := $ctx.Values.operator.watchNamespaces }}
{{- $args = append $args (printf "--namespace=%s" $ns) }}
{{- end }}
{{- $_ := set $container "args" $args }}
{{- end }}
{{- end }}
{{- if and (eq $component "operator") $ctx.Values.builds.caBundleConfigMap }}
{{- $_ := set $pod "volumes" (append $pod.volumes (dict "name" "pip-ca" "configMap" (dict "name" $ctx.Values.builds.caBundleConfigMap))) }}
{{- range $container := $pod.containers }}
{{- $_ := set $container "volumeMounts" (append $container.volumeMounts (dict "name" "pip-ca" "mountPath" "/etc/qso/pip-ca" "readOnly" true)) }}
{{- end }}
{{- end }}
{{- if eq $component "gateway" }}
{{- range $volume := $pod.volumes }}
{{- if eq $volume.name "tls" }}
{{- $_ := set $volume.secret "secretName" $ctx.Values.gateway.tls.secretName }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
One object of manifests/base, with the release's namespace, labels and values applied.
Its YAML, or an empty map for an object this release leaves out.
*/}}
{{- define "qso.object" -}}
{{- $obj := .obj -}}
{{- $ctx := .ctx -}}
{{- $ns := $ctx.Release.Namespace -}}
{{- $kind := $obj.kind -}}
{{- $name := $obj.metadata.name -}}
{{- $meta := $obj.metadata -}}
{{- $labels := merge (include "qso.labels" $ctx | fromYaml) ($meta.labels | default dict) -}}
{{- $_ := set $meta "labels" $labels -}}
{{- if not (has $kind (include "qso.clusterKinds" $ctx | fromJsonArray)) }}
{{- $_ := set $meta "namespace" $ns }}
{{- end }}
{{- range $subject := $obj.subjects | default list }}
{{- if eq $subject.kind "ServiceAccount" }}
{{- $_ := set $subject "namespace" $ns }}
{{- end }}
{{- end }}
{{- $keep := true -}}
{{- if eq $kind "Deployment" }}
{{- $component := ternary "operator" "gateway" (eq $name "qiskit-serverless-operator") }}
{{- $_ := set $obj.spec "replicas" (index $ctx.Values $component).replicas }}
{{- $annotations := $obj.spec.template.metadata.annotations | default dict }}
{{- $_ := set $annotations "checksum/settings" (include (print $ctx.Template.BasePath "/settings.yaml") $ctx | sha256sum) }}
{{- $_ := set $obj.spec.template.metadata "annotations" $annotations }}
{{- include "qso.pod" (dict "pod" $obj.spec.template.spec "ctx" $ctx "component" $component) }}
{{- else if and (eq $kind "Service") (eq $name "qiskit-serverless-gateway") }}
{{- $_ := set $obj.spec "type" $ctx.Values.gateway.service.type }}
{{- if and (eq $ctx.Values.gateway.service.type "NodePort") $ctx.Values.gateway.service.nodePort }}
{{- range $port := $obj.spec.ports }}
{{- if eq $port.name "https" }}
{{- $_ := set $port "nodePort" $ctx.Values.gateway.service.nodePort }}
{{- end }}
{{- end }}
{{- end }}
{{- else if eq $kind "APIService" }}
{{- $keep = $ctx.Values.historyApi.enabled }}
{{- $_ := set $obj.spec.service "namespace" $ns }}
{{- if $ctx.Values.historyApi.caBundle }}
{{- $_ := set $obj.spec "caBundle" $ctx.Values.historyApi.caBundle }}
{{- end }}
{{- if $ctx.Values.gateway.tls.certManager.enabled }}
{{- $_ := set $meta "annotations" (dict "cert-manager.io/inject-ca-from" (printf "%s/qiskit-serverless-gateway" $ns)) }}
{{- end }}
{{- else if eq $kind "ValidatingAdmissionPolicy" }}
{{- range $variable := $obj.spec.variables }}
{{- if eq $variable.name "gateway" }}
{{- $_ := set $variable "expression" (printf "'system:serviceaccount:%s:qiskit-serverless-gateway'" $ns) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $keep }}
{{ toYaml $obj }}
{{- end }}
{{- end -}}
