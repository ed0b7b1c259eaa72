from pathlib import Path

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.config import OperatorConfig
from qiskit_serverless_operator.controller import jobspec
from qiskit_serverless_operator.controller.functions import desired_status
from tests.unit.operator_env import REQUIRED

CFG = OperatorConfig.from_env({**REQUIRED, "QSO_JOB_ENDPOINT_URL": "http://gw:8000/"})


def _sj(**spec):
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": "job-1", "namespace": "ns", "uid": "u-1"},
        "spec": {"function": "hello", **spec},
    }


def _qf(**spec):
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.FUNCTION_KIND,
        "metadata": {"name": "hello", "namespace": "ns", "uid": "f-1"},
        "spec": {
            "title": "hello",
            "entrypoint": "main.py",
            "source": {"files": {"main.py": "print(1)", "pkg/util.py": ""}},
            **spec,
        },
    }
    body["status"] = desired_status(body, CFG.runtime_image)
    return body


def test_job_pod_is_locked_down():
    job = jobspec.batch_job(_sj(), _qf(), CFG, arguments_secret="a")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["arguments"]["readOnly"] and mounts["source"]["readOnly"]
    # No storage credentials anywhere in the pod: only the runtime Secret's URLs.
    names = {e["name"] for e in container["env"]}
    assert not any("AWS" in n or "S3" in n for n in names)


def test_job_runs_once_with_deadline_and_ttl_and_is_owned():
    job = jobspec.batch_job(_sj(timeoutSeconds=90), _qf(), CFG, arguments_secret="a")
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 90
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["ttlSecondsAfterFinished"] == CFG.finished_pod_ttl_seconds
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["uid"] == "u-1" and owner["controller"] is True
    assert job["metadata"]["name"] == jobspec.batch_job_name("job-1")


def test_environment_follows_the_qiskit_serverless_contract():
    job = jobspec.batch_job(_sj(), _qf(), CFG, arguments_secret="a")
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ARGUMENTS_PATH"] == f"{c.POD_ARGUMENTS_DIR}/{c.ARGUMENTS_FILE}"
    assert env["RESULTS_PATH"] == c.POD_RESULTS_PATH
    assert env["ENV_JOB_ID_GATEWAY"] == "u-1"
    assert env["ENV_JOB_GATEWAY_HOST"] == "http://gw:8000"


def test_names_are_deterministic_and_valid_dns_labels():
    long = "x" * 80
    assert jobspec.batch_job_name(long) == jobspec.batch_job_name(long)
    assert len(jobspec.batch_job_name(long)) <= 63
    assert jobspec.batch_job_name(long) != jobspec.batch_job_name(long + "y")


def test_source_files_with_folders_mount_at_their_paths():
    qf = _qf()
    cm = jobspec.source_configmap(qf)
    items = jobspec.source_items(qf)
    assert {i["path"] for i in items} == {"main.py", "pkg/util.py"}
    assert all("/" not in key for key in cm["data"])
    assert {i["key"] for i in items} == set(cm["data"])


def test_function_status_for_each_kind_of_source():
    assert _qf()["status"]["phase"] == "Ready"
    assert _qf()["status"]["image"] == "reg/runtime:1"
    prebuilt = _qf(image="reg/mine:2", source=None)
    prebuilt["spec"].pop("source")
    assert desired_status(prebuilt, "r")["image"] == "reg/mine:2"
    assert desired_status(prebuilt, "r")["reason"] == "NeedsCheck"
    missing = _qf(entrypoint="nope.py")
    assert missing["status"]["phase"] == "Failed"
    assert "nope.py" in missing["status"]["message"]
    deps = _qf(dependencies=["requests"])
    assert deps["status"]["phase"] == "Failed" and deps["status"]["reason"] == "BuildUnavailable"


def test_resources_merge_job_over_function_over_defaults():
    qf = _qf(resources={"requests": {"cpu": "1"}})
    merged = jobspec.resources(_sj(resources={"limits": {"memory": "2Gi"}}), qf, CFG)
    assert merged["requests"]["cpu"] == "1"
    assert merged["limits"]["memory"] == "2Gi"
    assert merged["requests"]["memory"] == CFG.default_memory


def test_every_mount_has_its_volume():
    job = jobspec.batch_job(_sj(), _qf(), CFG, arguments_secret="a")
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in pod["containers"][0]["volumeMounts"]} <= volumes


def test_build_tag_follows_the_inputs_and_the_build_pod_is_locked_down():
    from qiskit_serverless_operator.controller import buildspec

    qf = _qf(dependencies=["tabulate==0.9.0"])
    tag = buildspec.build_tag("reg/runtime:1", qf["spec"])
    assert buildspec.build_tag("reg/runtime:1", qf["spec"]) == tag
    assert buildspec.build_tag("reg/runtime:2", qf["spec"]) != tag
    changed = _qf(dependencies=["tabulate==0.9.0"])
    changed["spec"]["source"]["files"]["main.py"] = "print(2)"
    assert buildspec.build_tag("reg/runtime:1", changed["spec"]) != tag
    cfg = OperatorConfig.from_env(
        {
            **REQUIRED,
            "QSO_JOB_ENDPOINT_URL": "http://gw",
            "QSO_REGISTRY": "reg",
            "QSO_BUILDER_IMAGE": "reg/b:1",
            "QSO_PIP_INDEX_URL": "https://mirror.example/simple",
        }
    )
    job = buildspec.build_job(qf, cfg, tag, with_ca=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "privileged" not in container["securityContext"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["QSO_TARGET_IMAGE"] == f"reg/qso-functions/ns/hello:{tag}"
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_CERT"] == "/etc/qso-ca/ca.crt"
    assert job["metadata"]["name"] == buildspec.build_job_name("hello", tag)
    assert desired_status(qf, "r", builds=False)["reason"] == "BuildUnavailable"
    assert desired_status(qf, "r", builds=True)["reason"] == "NeedsBuild"


def test_a_catalog_functions_job_runs_in_the_providers_namespace_unowned():
    sj = _sj(provider="acme", credentials={"secretRef": {"name": "ibm"}})
    where = jobspec.placement(sj)
    assert where.namespace == "acme" and where.remote
    assert where.base.endswith("-job-1") and len(where.base) == len("12345678-job-1")
    # Two namespaces' jobs of one name meet in the provider's: their children differ.
    other = jobspec.placement({**sj, "metadata": {**sj["metadata"], "namespace": "ns2"}})
    assert other.base != where.base
    job = jobspec.batch_job(sj, _qf(provider="acme"), CFG, arguments_secret="a")
    assert job["metadata"]["namespace"] == "acme"
    assert "ownerReferences" not in job["metadata"]  # owners live in the same namespace
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[c.LABEL_JOB] == "job-1" and labels[c.LABEL_JOB_NAMESPACE] == "ns"
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "QISKIT_IBM_TOKEN")
    # The user's credentials, copied beside the pod.
    assert token["valueFrom"]["secretKeyRef"]["name"] == jobspec.credentials_secret_name(where.base)
    secret = jobspec.runtime_secret(sj, result_url="r", logs_url="l", gateway_token="t")
    assert secret["metadata"]["namespace"] == "acme" and "ownerReferences" not in secret["metadata"]
    # A job of the provider's own namespace, or without a provider, stays home and owned.
    own = _sj(provider="ns")
    assert not jobspec.placement(own).remote
    local = jobspec.batch_job(own, _qf(), CFG, arguments_secret="a")
    assert local["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_a_prebuilt_image_gets_the_wrapper_from_an_init_container():
    qf = _qf(image="example.com/ibm-built:1")
    qf["spec"].pop("source")
    job = jobspec.batch_job(_sj(), qf, CFG, arguments_secret="a")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == CFG.runtime_image
    (main,) = pod["containers"]
    assert {"name": "PYTHONPATH", "value": jobspec.WRAPPER_DIR} in main["env"]
    assert {"name": "qso-wrapper", "mountPath": jobspec.WRAPPER_DIR, "readOnly": True} in (
        main["volumeMounts"]
    )
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    # A function on the runtime base image has the wrapper already.
    assert (
        "initContainers"
        not in jobspec.batch_job(_sj(), _qf(), CFG, arguments_secret="a")["spec"]["template"][
            "spec"
        ]
    )


def _labelled(**labels):
    sj = _sj()
    sj["metadata"]["labels"] = labels
    return jobspec.batch_job(sj, _qf(), CFG, arguments_secret="a")


def test_a_kueue_job_is_suspended_with_its_queue_and_priority_class():
    job = _labelled(
        **{c.LABEL_KUEUE_QUEUE: "team", c.LABEL_KUEUE_PRIORITY_CLASS: "high", "other": "x"}
    )
    assert job["spec"]["suspend"] is True
    labels = job["metadata"]["labels"]
    assert labels[c.LABEL_KUEUE_QUEUE] == "team"
    assert labels[c.LABEL_KUEUE_PRIORITY_CLASS] == "high"
    assert "other" not in labels
    # Kueue's pod integration must not take the pod for a workload of its own.
    assert c.LABEL_KUEUE_QUEUE not in job["spec"]["template"]["metadata"]["labels"]


def test_a_priority_class_without_a_queue_is_not_kueues():
    job = _labelled(**{c.LABEL_KUEUE_PRIORITY_CLASS: "high"})
    assert job["spec"]["suspend"] is False
    assert c.LABEL_KUEUE_PRIORITY_CLASS not in job["metadata"]["labels"]


def _parent():
    sj = _sj(credentials={"secretRef": {"name": "ibm"}}, priority=3)
    sj["metadata"]["labels"] = {c.LABEL_KUEUE_QUEUE: "team"}
    sj["status"] = {"user": "alice"}
    return sj


def test_a_task_is_a_job_of_its_parent_s_function_owned_by_it():
    task = jobspec.task_job(_parent(), 4, {"cpu": "100m"}, {"GREETING": "hi"})
    meta, spec = task["metadata"], task["spec"]
    assert meta["name"] == "job-1-t4" and meta["namespace"] == "ns"
    assert meta["labels"] == {c.LABEL_TASK_PARENT: "job-1", c.LABEL_KUEUE_QUEUE: "team"}
    (owner,) = meta["ownerReferences"]
    assert owner["uid"] == "u-1" and owner["controller"] is True
    assert spec["task"] == {"parent": "job-1", "index": 4, "env": {"GREETING": "hi"}}
    assert spec["credentials"] == {"secretRef": {"name": "ibm"}} and spec["priority"] == 3
    assert "annotations" not in meta  # never the submitter's: the policy would refuse it
    assert jobspec.task_owner_uid(task) == "u-1"
    # Named after its job, but no owner reference: nobody's task.
    forged = {"metadata": {"name": "x"}, "spec": {"function": "f", "task": {"parent": "job-1"}}}
    assert jobspec.task_owner_uid(forged) is None


def test_task_names_stay_dns_labels_and_distinct():
    long = "a" * 70
    names = {jobspec.task_name(long, i) for i in range(3)} | {jobspec.task_name(long + "b", 0)}
    assert len(names) == 4
    assert all(len(n) <= 63 and n.endswith(("-t0", "-t1", "-t2")) for n in names)


def test_a_task_pod_spreads_over_nodes_and_gets_its_env_and_user():
    task = jobspec.task_job(_parent(), 0, {"cpu": "100m"}, {"GREETING": "hi"})
    task["metadata"]["uid"] = "t-1"
    job = jobspec.batch_job(task, _qf(), CFG, arguments_secret="a")
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"][c.LABEL_TASK_PARENT] == "job-1"
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a full node never blocks a task
    assert spread["labelSelector"] == {"matchLabels": {c.LABEL_TASK_PARENT: "job-1"}}
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["GREETING"] == "hi"
    # Until the operator checked it, a task counts for nobody in particular; then for the
    # user written in its status (its job's).
    assert jobspec.queue_user(task) == c.namespace_user("ns")
    task["status"] = {"user": "alice"}
    assert jobspec.queue_user(task) == "alice"
    # A job that is no task is its submitter's, whatever its status says.
    plain = _sj()
    plain["status"] = {"user": "mallory"}
    assert jobspec.queue_user(plain) == c.namespace_user("ns")
    plain_pod = jobspec.batch_job(plain, _qf(), CFG, arguments_secret="a")
    assert "topologySpreadConstraints" not in plain_pod["spec"]["template"]["spec"]


def test_task_limits_agree_with_the_crd():
    import yaml

    from qiskit_serverless_operator.runtime import tasks

    root = Path(__file__).resolve().parents[2]
    crd = yaml.safe_load((root / "crds" / "serverless.qiskit.org_serverlessjobs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["task"]["properties"]["index"]["maximum"] == (c.MAX_TASKS_PER_JOB - 1)
    assert tasks.MAX_PAYLOAD_BYTES == c.MAX_TASK_PAYLOAD_BYTES


def test_the_runtime_secret_can_carry_the_arguments_and_says_what_it_weighs():
    sj = _sj()
    bare = jobspec.runtime_secret(sj, result_url="r", logs_url="l", gateway_token="t")
    assert c.ARGUMENTS_FILE not in bare["stringData"]
    with_args = jobspec.runtime_secret(
        sj, result_url="r", logs_url="l", gateway_token="t", arguments_json='{"é":1}'
    )
    assert with_args["stringData"][c.ARGUMENTS_FILE] == '{"é":1}'
    # Bytes as the API server counts them (keys and UTF-8 values), not characters.
    added = len(c.ARGUMENTS_FILE) + len('{"é":1}'.encode())
    assert jobspec.secret_bytes(with_args) == jobspec.secret_bytes(bare) + added
