-- Argo CD health of a QiskitFunction (serverless.qiskit.org), from the status the operator
-- writes: Ready is Healthy, Pending and Building are Progressing, Failed is Degraded.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the function up"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. tostring(generation)
  return hs
end
local phase = status.phase
local message = status.message
if phase == "Ready" then
  hs.status = "Healthy"
  hs.message = message or ("Ready: " .. (status.image or "runtime image"))
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message or "The function failed to build"
elseif phase == "Pending" or phase == "Building" then
  hs.status = "Progressing"
  hs.message = message or phase
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
