-- Argo CD health of a ServerlessJob (serverless.qiskit.org), from the status the operator
-- writes, the way Argo CD reads a batch Job: DONE is Healthy, ERROR is Degraded, a job
-- still on its way (QUEUED, INITIALIZING, RUNNING) is Progressing, and a job held back
-- (spec.suspend, for Kueue) or stopped on request (CANCELED) is Suspended.
local hs = {}
local status = obj.status or {}
local spec = obj.spec or {}
local phase = status.phase
local message = status.message
if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the job up"
  return hs
end
if phase == "DONE" then
  hs.status = "Healthy"
  hs.message = message or "The job finished and its result is stored"
elseif phase == "ERROR" then
  hs.status = "Degraded"
  hs.message = message or "The job failed"
elseif phase == "CANCELED" then
  hs.status = "Suspended"
  hs.message = message or "The job was stopped"
elseif phase == "QUEUED" and spec.suspend == true then
  hs.status = "Suspended"
  hs.message = message or "Suspended: waiting for admission"
elseif phase == "QUEUED" or phase == "INITIALIZING" or phase == "RUNNING" then
  hs.status = "Progressing"
  local text = phase
  if status.subStatus ~= nil and phase == "RUNNING" then
    text = phase .. ": " .. status.subStatus
  end
  if message ~= nil then
    text = text .. " (" .. message .. ")"
  end
  hs.message = text
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
