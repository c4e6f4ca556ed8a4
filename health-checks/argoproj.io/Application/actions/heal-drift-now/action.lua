-- Ask argo-drift to heal the current drift now. It heals through every automatic guardrail
-- (rate limits, cooldown, recurrence breaker, windows, blast radius, error budget), never
-- around them, and never what calls for a freeze.
local report = nil
if obj.metadata.annotations ~= nil then
  report = obj.metadata.annotations["argo-drift.io/report-id"]
end
if report == nil or report == "" then
  error("argo-drift reports no drift on this Application", 0)
end
obj.metadata.annotations["argo-drift.io/heal-now"] = report
return obj
