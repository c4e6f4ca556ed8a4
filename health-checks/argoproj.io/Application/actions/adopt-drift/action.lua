-- Answer the pending approval by keeping the live values: argo-drift.io/adopt names the pending
-- approval's id, and argo-drift proposes the drift to Git (a branch, and a pull request when a
-- forge is configured) instead of healing it.
local pending = nil
if obj.metadata.annotations ~= nil then
  pending = obj.metadata.annotations["argo-drift.io/pending-approval"]
end
if pending == nil or pending == "" then
  error("argo-drift has no approval pending on this Application", 0)
end
obj.metadata.annotations["argo-drift.io/adopt"] = pending
return obj
