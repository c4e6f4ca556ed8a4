-- argo-drift: an Application is Degraded while its drift is at or above a severity.
-- The argo-drift controller keeps two annotations on each Application it watches:
--   argo-drift.io/drift-severity  the highest severity of the app's current drift (none..critical)
--   argo-drift.io/drift-summary   one readable line: what drifted, how bad, who changed it
-- The threshold is "high" unless the Application says otherwise in argo-drift.io/degrade-at
-- (a severity, or "none" to never degrade). Argo CD's own health of a child Application
-- (status.health) is kept when it is not Healthy, so an app of apps still shows a failing child.
-- Runs in Argo CD's default sandbox: base and table only, no string or math library.
local degrade_at = "high"
local order = {none = 0, info = 1, low = 2, medium = 3, high = 4, critical = 5}

local hs = {status = "Healthy", message = ""}
local annotations = {}
if obj.metadata ~= nil and obj.metadata.annotations ~= nil then
  annotations = obj.metadata.annotations
end

if obj.status ~= nil and obj.status.health ~= nil and obj.status.health.status ~= nil
    and obj.status.health.status ~= "Healthy" then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
  return hs
end

local threshold = annotations["argo-drift.io/degrade-at"]
if threshold == nil or order[threshold] == nil then
  threshold = degrade_at
end
local severity = annotations["argo-drift.io/drift-severity"]
local summary = annotations["argo-drift.io/drift-summary"]
if severity == nil or order[severity] == nil then
  return hs
end
if summary == nil then
  summary = severity .. " drift"
end
if severity ~= "none" and threshold ~= "none" and order[severity] >= order[threshold] then
  hs.status = "Degraded"
  hs.message = "argo-drift: " .. summary
elseif severity ~= "none" and threshold == "none" then
  hs.message = "argo-drift: " .. summary .. " (argo-drift.io/degrade-at is none)"
elseif severity ~= "none" then
  hs.message = "argo-drift: " .. summary .. " (below " .. threshold .. ")"
end
return hs
