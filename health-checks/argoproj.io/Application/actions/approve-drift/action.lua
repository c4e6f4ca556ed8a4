-- Approve the pending drift heal: argo-drift.io/approve names the pending approval's id.
local pending = nil
if obj.metadata.annotations ~= nil then
  pending = obj.metadata.annotations["argo-drift.io/pending-approval"]
end
if pending == nil or pending == "" then
  error("argo-drift has no approval pending on this Application", 0)
end
obj.metadata.annotations["argo-drift.io/approve"] = pending
return obj
