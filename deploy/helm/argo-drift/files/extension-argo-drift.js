(() => {
  // src/index.jsx
  var React = window.React;
  var EXTENSION = "argo-drift";
  var SEVERITIES = ["none", "info", "low", "medium", "high", "critical"];
  var COLOURS = {
    critical: "#8e1b1b",
    high: "#e96d76",
    medium: "#f4a73b",
    low: "#6d7f8b",
    info: "#a3b1bb",
    none: "#18be94",
    unknown: "#a3b1bb"
  };
  var rank = (severity) => SEVERITIES.indexOf(severity);
  function url(path) {
    return new URL(path.replace(/^\//, ""), document.baseURI).toString();
  }
  function appHeaders(application) {
    return {
      "Argocd-Application-Name": `${application.metadata.namespace}:${application.metadata.name}`,
      "Argocd-Project-Name": application.spec && application.spec.project || "default"
    };
  }
  async function getJson(path, headers) {
    const response = await fetch(url(path), { headers: headers || {}, credentials: "same-origin" });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const why = body && (body.error || body.message) || text.trim() || response.statusText;
      const error = new Error(`${response.status}: ${why}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  function useLoad(load, deps) {
    const [state, setState] = React.useState({ loading: true });
    React.useEffect(() => {
      let live = true;
      const run = () => load().then(
        (data) => live && setState({ data }),
        (error) => live && setState({ error })
      );
      run();
      const timer = setInterval(run, 3e4);
      return () => {
        live = false;
        clearInterval(timer);
      };
    }, deps);
    return state;
  }
  function useReport(application) {
    const key = application ? `${application.metadata.namespace}/${application.metadata.name}` : "";
    return useLoad(() => getJson(`/extensions/${EXTENSION}/api/v1/report`, appHeaders(application)), [key]);
  }
  function value(v) {
    if (v === void 0 || v === null) {
      return "—";
    }
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function time(t) {
    if (!t) {
      return "";
    }
    const d = typeof t === "number" ? new Date(t * 1e3) : new Date(t);
    return isNaN(d.getTime()) ? String(t) : d.toISOString().replace(/\.\d+Z$/, "Z");
  }
  function age(since, now) {
    if (!since) {
      return "";
    }
    const s = Math.max(0, Math.floor((now - new Date(since).getTime()) / 1e3));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor(s % 3600 / 60)}m`;
    return `${Math.floor(s / 86400)}d${Math.floor(s % 86400 / 3600)}h`;
  }
  function drifted(report) {
    return (report && report.resources || []).filter((r) => r.status !== "synced");
  }
  function worst(resources) {
    return resources.reduce((w, r) => rank(r.severity) > rank(w) ? r.severity : w, "none");
  }
  function sameKey(a, group, kind, namespace, name) {
    return (a.group || "") === (group || "") && a.kind === kind && (a.namespace || "") === (namespace || "") && a.name === name;
  }
  var cell = { padding: "4px 8px", borderBottom: "1px solid #dee6eb", verticalAlign: "top", textAlign: "left" };
  var mono = { fontFamily: "monospace", wordBreak: "break-all" };
  function Severity({ severity }) {
    const s = severity || "unknown";
    return /* @__PURE__ */ React.createElement(
      "span",
      {
        className: "argo-drift-severity",
        "data-severity": s,
        style: { background: COLOURS[s] || COLOURS.unknown, color: "#fff", borderRadius: 3, padding: "1px 6px", fontSize: "0.85em", textTransform: "uppercase" }
      },
      s
    );
  }
  function Problem({ state, what }) {
    if (state.loading) {
      return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-loading" }, "Loading ", what, "…");
    }
    const message = state.error.status === 404 ? "argo-drift has not analysed this application (is it opted in?)." : state.error.message;
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-error" }, "argo-drift: ", message);
  }
  function changedBy(change) {
    const who = change.manager || "unknown manager";
    const how = change.attribution && change.attribution !== "exact" ? ` (${change.attribution})` : "";
    return `${who}${how}`;
  }
  function Changes({ resource }) {
    if (!resource.changes || resource.changes.length === 0) {
      return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-status" }, resource.kind, " ", resource.name, " is ", /* @__PURE__ */ React.createElement("b", null, resource.status), " ", /* @__PURE__ */ React.createElement(Severity, { severity: resource.severity }), " ", resource.rule ? `rule ${resource.rule}` : "");
    }
    return /* @__PURE__ */ React.createElement("table", { className: "argo-drift-changes", style: { width: "100%", borderCollapse: "collapse" } }, /* @__PURE__ */ React.createElement("thead", null, /* @__PURE__ */ React.createElement("tr", null, ["Path", "Git", "Live", "Changed by", "When", "Severity", "Rule"].map((h) => /* @__PURE__ */ React.createElement("th", { key: h, style: cell }, h)))), /* @__PURE__ */ React.createElement("tbody", null, resource.changes.map((c) => /* @__PURE__ */ React.createElement("tr", { key: c.path, className: "argo-drift-change", "data-path": c.path }, /* @__PURE__ */ React.createElement("td", { style: { ...cell, ...mono } }, c.field || c.path), /* @__PURE__ */ React.createElement("td", { style: { ...cell, ...mono }, className: "argo-drift-git" }, value(c.desired)), /* @__PURE__ */ React.createElement("td", { style: { ...cell, ...mono }, className: "argo-drift-live" }, value(c.live)), /* @__PURE__ */ React.createElement("td", { style: cell, className: "argo-drift-manager" }, changedBy(c)), /* @__PURE__ */ React.createElement("td", { style: cell }, time(c.time)), /* @__PURE__ */ React.createElement("td", { style: cell }, /* @__PURE__ */ React.createElement(Severity, { severity: c.severity })), /* @__PURE__ */ React.createElement("td", { style: cell }, c.rule)))));
  }
  function stepText(step) {
    switch (step.step) {
      case "heal":
        return `heal ${step.resources.length} resource(s)${step.approved ? ` (approved ${step.approved})` : ""}`;
      case "requestApproval":
        return `request approval ${step.id}`;
      default:
        return step.step.replace(/([A-Z])/g, " $1").toLowerCase();
    }
  }
  function Decision({ report, resource }) {
    const decision = report.decision;
    if (!decision) {
      return null;
    }
    const mine = resource ? (decision.resources || []).filter((r) => sameKey(r, resource.group, resource.kind, resource.namespace, resource.name)) : decision.resources || [];
    const pending = report.pendingApproval;
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-decision", style: { marginTop: 12 } }, /* @__PURE__ */ React.createElement("div", null, /* @__PURE__ */ React.createElement("b", null, "Decision"), " (", decision.mode, ", ", time(decision.at), "):", " ", mine.length > 0 ? mine.map((r) => resource ? r.actions.join(", ") : `${r.kind} ${r.name}: ${r.actions.join(", ")}`).join("; ") : "nothing for this resource", decision.steps && decision.steps.length > 0 ? ` — steps: ${decision.steps.map(stepText).join(", ")}` : ""), (decision.held || []).map((h, i) => /* @__PURE__ */ React.createElement("div", { key: i, className: "argo-drift-held", style: { color: "#8e1b1b" } }, "Held by ", h.guardrail, ": ", h.action, " — ", h.reason, h.until ? ` (until ${time(h.until)})` : "")), pending ? /* @__PURE__ */ React.createElement("div", { className: "argo-drift-pending" }, "Approval pending: ", /* @__PURE__ */ React.createElement("code", null, pending.id), " — use the Application's ", /* @__PURE__ */ React.createElement("b", null, "approve-drift"), " action, or", " ", /* @__PURE__ */ React.createElement("code", null, "kubectl annotate application -n ", report.namespace, " ", report.application, " argo-drift.io/approve=", pending.id)) : null);
  }
  function Summary({ report }) {
    const d = drifted(report);
    const fields = d.reduce((n, r) => n + (r.changes ? r.changes.length : 0), 0);
    const s = report.summary || {};
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-summary" }, /* @__PURE__ */ React.createElement(Severity, { severity: worst(d) }), " ", d.length, " of ", s.resources, " resource(s) drifted (", s.modified || 0, " modified, ", s.missing || 0, " missing, ", s.extra || 0, " ", "extra), ", fields, " field(s)", report.driftSince ? ` · drifting since ${time(report.driftSince)}` : "", report.revision ? ` · Git ${report.revision.slice(0, 12)}` : "", report.error ? /* @__PURE__ */ React.createElement("div", { className: "argo-drift-error" }, "Analysis failed: ", report.error) : null);
  }
  function ResourceTab({ resource, application }) {
    const state = useReport(application);
    if (!state.data) {
      return /* @__PURE__ */ React.createElement(Problem, { state, what: "the drift report" });
    }
    const report = state.data;
    const meta = resource.metadata || {};
    const group = (resource.apiVersion || "").includes("/") ? resource.apiVersion.split("/")[0] : "";
    const mine = (report.resources || []).find((r) => sameKey(r, group, resource.kind, meta.namespace, meta.name));
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-resource", style: { padding: 12 } }, !mine ? /* @__PURE__ */ React.createElement("div", null, "argo-drift does not track ", resource.kind, " ", meta.name, " in this application.") : mine.status === "synced" ? /* @__PURE__ */ React.createElement("div", { className: "argo-drift-synced" }, /* @__PURE__ */ React.createElement(Severity, { severity: "none" }), " ", resource.kind, " ", meta.name, " matches Git.") : /* @__PURE__ */ React.createElement(React.Fragment, null, /* @__PURE__ */ React.createElement("div", { style: { marginBottom: 8 } }, resource.kind, " ", meta.name, ": ", /* @__PURE__ */ React.createElement("b", null, mine.status), " ", /* @__PURE__ */ React.createElement(Severity, { severity: mine.severity }), mine.rule ? ` rule ${mine.rule}` : ""), /* @__PURE__ */ React.createElement(Changes, { resource: mine }), mine.unverified && mine.unverified.length ? /* @__PURE__ */ React.createElement("div", null, "Unverified: ", mine.unverified.join(", ")) : null), /* @__PURE__ */ React.createElement(Decision, { report, resource: mine }));
  }
  function StatusPanelItem({ application, openFlyout }) {
    const state = useReport(application);
    const report = state.data;
    const d = drifted(report);
    const fields = d.reduce((n, r) => n + (r.changes ? r.changes.length : 0), 0);
    return /* @__PURE__ */ React.createElement("div", { className: "application-status-panel__item argo-drift-status-panel", style: { cursor: "pointer" }, onClick: () => openFlyout() }, /* @__PURE__ */ React.createElement("label", { style: { fontSize: 12, fontWeight: 600, color: "#6d7f8b", display: "block", marginBottom: 4 } }, "DRIFT"), report ? /* @__PURE__ */ React.createElement("div", null, /* @__PURE__ */ React.createElement(Severity, { severity: worst(d) }), " ", d.length, " resource(s), ", fields, " field(s)", report.pendingApproval ? /* @__PURE__ */ React.createElement("div", { style: { fontSize: "0.85em" } }, "approval pending") : null) : state.loading ? /* @__PURE__ */ React.createElement("div", null, "…") : /* @__PURE__ */ React.createElement("div", { title: state.error.message }, "unavailable"));
  }
  function Flyout({ application }) {
    const state = useReport(application);
    if (!state.data) {
      return /* @__PURE__ */ React.createElement(Problem, { state, what: "the drift report" });
    }
    const report = state.data;
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-flyout", style: { padding: 16 } }, /* @__PURE__ */ React.createElement("h4", null, "Drift of ", report.namespace, "/", report.application), /* @__PURE__ */ React.createElement(Summary, { report }), /* @__PURE__ */ React.createElement(Decision, { report }), drifted(report).map((r) => /* @__PURE__ */ React.createElement("div", { key: `${r.group}/${r.kind}/${r.namespace}/${r.name}`, className: "argo-drift-resource-section", style: { marginTop: 16 } }, /* @__PURE__ */ React.createElement("h5", null, r.group ? `${r.group}/` : "", r.kind, " ", r.namespace ? `${r.namespace}/` : "", r.name, " — ", r.status, " ", /* @__PURE__ */ React.createElement(Severity, { severity: r.severity })), /* @__PURE__ */ React.createElement(Changes, { resource: r }))));
  }
  function FleetPage() {
    const [sort, setSort] = React.useState({ key: "severity", down: true });
    const [all, setAll] = React.useState(false);
    const state = useLoad(async () => {
      const list = await getJson("/api/v1/applications?fields=items.metadata.name,items.metadata.namespace,items.spec.project");
      const visible = list && list.items || [];
      if (visible.length === 0) {
        return { apps: [], visible: 0 };
      }
      const fleet = await getJson(`/extensions/${EXTENSION}/api/v1/fleet`, appHeaders(visible[0]));
      const seen = new Map(visible.map((a) => [`${a.metadata.namespace}/${a.metadata.name}`, a]));
      const apps = fleet.applications.filter((a) => seen.has(`${a.namespace}/${a.application}`)).map((a) => ({ ...a, project: seen.get(`${a.namespace}/${a.application}`).spec.project }));
      return { apps, visible: visible.length };
    }, []);
    if (!state.data) {
      return /* @__PURE__ */ React.createElement(Problem, { state, what: "the fleet" });
    }
    const now = Date.now();
    const shown = state.data.apps.filter((a) => all || a.severity !== "none");
    const ageOf = (a) => a.driftSince ? now - new Date(a.driftSince).getTime() : -1;
    const by = sort.key === "severity" ? (a, b) => rank(a.severity) - rank(b.severity) || ageOf(a) - ageOf(b) : (a, b) => ageOf(a) - ageOf(b) || rank(a.severity) - rank(b.severity);
    shown.sort((a, b) => sort.down ? -by(a, b) : by(a, b));
    const header = (key, title) => /* @__PURE__ */ React.createElement("th", { style: { ...cell, cursor: "pointer" }, className: `argo-drift-sort-${key}`, onClick: () => setSort({ key, down: sort.key === key ? !sort.down : true }) }, title, " ", sort.key === key ? sort.down ? "▼" : "▲" : "");
    const synced = state.data.apps.filter((a) => a.severity === "none").length;
    return /* @__PURE__ */ React.createElement("div", { className: "argo-drift-fleet", style: { padding: 24 } }, /* @__PURE__ */ React.createElement("h3", null, "Drift across the fleet"), /* @__PURE__ */ React.createElement("div", { style: { marginBottom: 8 } }, shown.length, " application(s) shown; ", synced, " match Git.", " ", /* @__PURE__ */ React.createElement("label", null, /* @__PURE__ */ React.createElement("input", { type: "checkbox", checked: all, onChange: (e) => setAll(e.target.checked) }), " show all")), /* @__PURE__ */ React.createElement("table", { style: { width: "100%", borderCollapse: "collapse" } }, /* @__PURE__ */ React.createElement("thead", null, /* @__PURE__ */ React.createElement("tr", null, /* @__PURE__ */ React.createElement("th", { style: cell }, "Application"), /* @__PURE__ */ React.createElement("th", { style: cell }, "Project"), header("severity", "Severity"), header("age", "Drifting for"), /* @__PURE__ */ React.createElement("th", { style: cell }, "Drift"), /* @__PURE__ */ React.createElement("th", { style: cell }, "Approval"))), /* @__PURE__ */ React.createElement("tbody", null, shown.map((a) => /* @__PURE__ */ React.createElement("tr", { key: `${a.namespace}/${a.application}`, className: "argo-drift-fleet-row", "data-app": `${a.namespace}/${a.application}` }, /* @__PURE__ */ React.createElement("td", { style: cell }, /* @__PURE__ */ React.createElement("a", { href: url(`/applications/${a.namespace}/${a.application}`) }, a.namespace, "/", a.application)), /* @__PURE__ */ React.createElement("td", { style: cell }, a.project), /* @__PURE__ */ React.createElement("td", { style: cell }, /* @__PURE__ */ React.createElement(Severity, { severity: a.severity })), /* @__PURE__ */ React.createElement("td", { style: cell }, age(a.driftSince, now)), /* @__PURE__ */ React.createElement("td", { style: { ...cell, ...mono } }, a.summary), /* @__PURE__ */ React.createElement("td", { style: cell }, a.pendingApproval ? /* @__PURE__ */ React.createElement("code", null, a.pendingApproval) : ""))))));
  }
  ((api) => {
    if (!api || !React) {
      return;
    }
    api.registerResourceExtension(ResourceTab, "*", "*", "Drift", { icon: "fa fa-code-branch" });
    api.registerStatusPanelExtension(StatusPanelItem, "Drift", "argo-drift", Flyout);
    api.registerSystemLevelExtension(FleetPage, "Drift", "/drift", "fa-code-branch");
  })(window.extensionsAPI);
})();
