-- argo-drift's actions on an Application, offered only when they apply. The controller keeps
-- these annotations on each Application it watches:
--   argo-drift.io/pending-approval  the id of the approval it waits for
--   argo-drift.io/report-id         the current drift's report id (while there is drift)
--   argo-drift.io/stopped           frozen | recurrence-breaker (automation stopped)
-- Each action writes the annotation the controller already understands; the controller then
-- decides, through its guardrails. Runs with the libraries closed (as Argo CD runs actions).
local actions = {}
local annotations = {}
if obj.metadata ~= nil and obj.metadata.annotations ~= nil then
  annotations = obj.metadata.annotations
end
local function set(key)
  local v = annotations[key]
  return v ~= nil and v ~= ""
end

if set("argo-drift.io/pending-approval") then
  local answered = annotations["argo-drift.io/approve"] == annotations["argo-drift.io/pending-approval"]
  actions["approve-drift"] = {
    ["iconClass"] = "fa fa-fw fa-check",
    ["displayName"] = "Approve healing the drift (argo-drift)",
    ["disabled"] = answered
  }
  actions["adopt-drift"] = {
    ["iconClass"] = "fa fa-fw fa-code-fork",
    ["displayName"] = "Keep the live values and propose them to Git (argo-drift)",
    ["disabled"] = annotations["argo-drift.io/adopt"] == annotations["argo-drift.io/pending-approval"]
  }
  actions["reject-drift"] = {
    ["iconClass"] = "fa fa-fw fa-ban",
    ["displayName"] = "Reject healing the drift (argo-drift)"
  }
end
if set("argo-drift.io/report-id") and not set("argo-drift.io/stopped") then
  actions["heal-drift-now"] = {
    ["iconClass"] = "fa fa-fw fa-medkit",
    ["displayName"] = "Heal the drift now, within argo-drift's guardrails",
    ["disabled"] = annotations["argo-drift.io/heal-now"] == annotations["argo-drift.io/report-id"]
  }
end
if set("argo-drift.io/stopped") then
  actions["reset-drift-guardrails"] = {
    ["iconClass"] = "fa fa-fw fa-undo",
    ["displayName"] = "Reset argo-drift (unfreeze, clear the recurrence breaker)"
  }
end
return actions
