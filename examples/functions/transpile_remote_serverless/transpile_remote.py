"""transpile_remote_serverless: transpile circuits for a backend, as in IBM's tutorial.

Arguments: circuits (list of QuantumCircuit), backend (name), optimization_level (0-3).
With IBM Quantum credentials in the job (QISKIT_IBM_TOKEN, from the job's credentials
Secret) the backend is a real one; without, the fake backend of that name from
qiskit_ibm_runtime.fake_provider stands in (ibm_kyoto -> fake_kyoto).
Written only against qiskit_serverless's program-side API: it runs unchanged on IBM's service.
"""

import os
import time

from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager
from qiskit_ibm_runtime import QiskitRuntimeService, fake_provider
from qiskit_serverless import Job, get_arguments, save_result, update_status


def resolve_backend(name):
    if os.environ.get("QISKIT_IBM_TOKEN"):
        service = QiskitRuntimeService(
            channel=os.environ.get("QISKIT_IBM_CHANNEL") or "ibm_quantum_platform",
            token=os.environ["QISKIT_IBM_TOKEN"],
            instance=os.environ.get("QISKIT_IBM_INSTANCE") or None,
        )
        return service.backend(name)
    short = name.removeprefix("ibm_").removeprefix("fake_")
    fake_class = getattr(fake_provider, "Fake" + short.title().replace("_", ""), None)
    if fake_class is None:
        raise ValueError(f"no IBM Quantum credentials, and no fake backend named fake_{short}")
    return fake_class()


def transpile_remote(circuit, optimization_level, backend):
    pass_manager = generate_preset_pass_manager(
        optimization_level=optimization_level, backend=backend
    )
    return pass_manager.run(circuit)


arguments = get_arguments()
circuits = arguments.get("circuits")
backend_name = arguments.get("backend")
optimization_level = arguments.get("optimization_level", 1)
delay = float(arguments.get("seconds_per_circuit", 0))

backend = resolve_backend(backend_name)
print(f"Transpiling {len(circuits)} circuits for {backend.name} at level {optimization_level}")
update_status(Job.MAPPING)
results = []
for index, circuit in enumerate(circuits, start=1):
    results.append(transpile_remote(circuit, optimization_level, backend))
    time.sleep(delay)
    if index % 10 == 0 or index == len(circuits):
        print(f"transpiled {index}/{len(circuits)}")
update_status(Job.POST_PROCESSING)
save_result({"transpiled_circuits": results})
print("Done")
