-- Reset argo-drift for this Application: a new value of argo-drift.io/reset unfreezes it
-- (automated sync back as it was) and clears its recurrence breaker. The Application's
-- resourceVersion makes the value new for every state of the Application.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local version = obj.metadata.resourceVersion
if version == nil then
  version = "0"
end
obj.metadata.annotations["argo-drift.io/reset"] = "reset-at-" .. version
return obj
