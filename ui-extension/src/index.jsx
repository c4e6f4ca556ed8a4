// argo-drift's drift view inside Argo CD's UI. Argo CD loads every `extension*.js` under
// /tmp/extensions on argocd-server into its page (server/server.go, serveExtensions) after
// setting `window.React` and `window.extensionsAPI` (ui/src/app/index.tsx,
// ui/src/app/shared/services/extensions-service.ts). This file brings no React of its own.
//
// It registers:
//   - a status-panel item: the application's worst drift severity and counts; its flyout
//     shows the whole report;
//   - a resource tab on every kind: that resource's changed fields (path, Git value, live
//     value, who changed it and when, severity and rule), the decision and any guardrail
//     holding it back;
//   - a system-level page: drifted applications across the fleet, sortable by severity and age.
//
// Data comes from argo-drift's read-only API through argocd-server's proxy extension
// (`/extensions/argo-drift/...`), which checks the user's Argo CD RBAC for the application
// named in `Argocd-Application-Name` and for `extensions, invoke, argo-drift`.

const React = window.React;
const EXTENSION = 'argo-drift';
const SEVERITIES = ['none', 'info', 'low', 'medium', 'high', 'critical'];
const COLOURS = {
    critical: '#8e1b1b',
    high: '#e96d76',
    medium: '#f4a73b',
    low: '#6d7f8b',
    info: '#a3b1bb',
    none: '#18be94',
    unknown: '#a3b1bb'
};

const rank = severity => SEVERITIES.indexOf(severity);

// Argo CD may be served under a root path (`--rootpath`, `<base href>`): resolve against it.
function url(path) {
    return new URL(path.replace(/^\//, ''), document.baseURI).toString();
}

function appHeaders(application) {
    return {
        'Argocd-Application-Name': `${application.metadata.namespace}:${application.metadata.name}`,
        'Argocd-Project-Name': (application.spec && application.spec.project) || 'default'
    };
}

async function getJson(path, headers) {
    const response = await fetch(url(path), {headers: headers || {}, credentials: 'same-origin'});
    const text = await response.text();
    let body = null;
    try {
        body = text ? JSON.parse(text) : null;
    } catch (e) {
        body = null;
    }
    if (!response.ok) {
        const why = (body && (body.error || body.message)) || text.trim() || response.statusText;
        const error = new Error(`${response.status}: ${why}`);
        error.status = response.status;
        throw error;
    }
    return body;
}

function useLoad(load, deps) {
    const [state, setState] = React.useState({loading: true});
    React.useEffect(() => {
        let live = true;
        const run = () =>
            load().then(
                data => live && setState({data}),
                error => live && setState({error})
            );
        run();
        const timer = setInterval(run, 30000);
        return () => {
            live = false;
            clearInterval(timer);
        };
    }, deps);
    return state;
}

function useReport(application) {
    const key = application ? `${application.metadata.namespace}/${application.metadata.name}` : '';
    return useLoad(() => getJson(`/extensions/${EXTENSION}/api/v1/report`, appHeaders(application)), [key]);
}

// ----- formatting -----------------------------------------------------------------------------

function value(v) {
    if (v === undefined || v === null) {
        return '—';
    }
    return typeof v === 'string' ? v : JSON.stringify(v);
}

function time(t) {
    if (!t) {
        return '';
    }
    const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
    return isNaN(d.getTime()) ? String(t) : d.toISOString().replace(/\.\d+Z$/, 'Z');
}

function age(since, now) {
    if (!since) {
        return '';
    }
    const s = Math.max(0, Math.floor((now - new Date(since).getTime()) / 1000));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

function drifted(report) {
    return ((report && report.resources) || []).filter(r => r.status !== 'synced');
}

function worst(resources) {
    return resources.reduce((w, r) => (rank(r.severity) > rank(w) ? r.severity : w), 'none');
}

function sameKey(a, group, kind, namespace, name) {
    return (a.group || '') === (group || '') && a.kind === kind && (a.namespace || '') === (namespace || '') && a.name === name;
}

// ----- pieces ---------------------------------------------------------------------------------

const cell = {padding: '4px 8px', borderBottom: '1px solid #dee6eb', verticalAlign: 'top', textAlign: 'left'};
const mono = {fontFamily: 'monospace', wordBreak: 'break-all'};

function Severity({severity}) {
    const s = severity || 'unknown';
    return (
        <span
            className='argo-drift-severity'
            data-severity={s}
            style={{background: COLOURS[s] || COLOURS.unknown, color: '#fff', borderRadius: 3, padding: '1px 6px', fontSize: '0.85em', textTransform: 'uppercase'}}>
            {s}
        </span>
    );
}

function Problem({state, what}) {
    if (state.loading) {
        return <div className='argo-drift-loading'>Loading {what}…</div>;
    }
    const message = state.error.status === 404 ? 'argo-drift has not analysed this application (is it opted in?).' : state.error.message;
    return <div className='argo-drift-error'>argo-drift: {message}</div>;
}

function changedBy(change) {
    const who = change.manager || 'unknown manager';
    const how = change.attribution && change.attribution !== 'exact' ? ` (${change.attribution})` : '';
    return `${who}${how}`;
}

function Changes({resource}) {
    if (!resource.changes || resource.changes.length === 0) {
        return (
            <div className='argo-drift-status'>
                {resource.kind} {resource.name} is <b>{resource.status}</b> <Severity severity={resource.severity} /> {resource.rule ? `rule ${resource.rule}` : ''}
            </div>
        );
    }
    return (
        <table className='argo-drift-changes' style={{width: '100%', borderCollapse: 'collapse'}}>
            <thead>
                <tr>
                    {['Path', 'Git', 'Live', 'Changed by', 'When', 'Severity', 'Rule'].map(h => (
                        <th key={h} style={cell}>
                            {h}
                        </th>
                    ))}
                </tr>
            </thead>
            <tbody>
                {resource.changes.map(c => (
                    <tr key={c.path} className='argo-drift-change' data-path={c.path}>
                        <td style={{...cell, ...mono}}>{c.field || c.path}</td>
                        <td style={{...cell, ...mono}} className='argo-drift-git'>
                            {value(c.desired)}
                        </td>
                        <td style={{...cell, ...mono}} className='argo-drift-live'>
                            {value(c.live)}
                        </td>
                        <td style={cell} className='argo-drift-manager'>
                            {changedBy(c)}
                        </td>
                        <td style={cell}>{time(c.time)}</td>
                        <td style={cell}>
                            <Severity severity={c.severity} />
                        </td>
                        <td style={cell}>{c.rule}</td>
                    </tr>
                ))}
            </tbody>
        </table>
    );
}

function stepText(step) {
    switch (step.step) {
        case 'heal':
            return `heal ${step.resources.length} resource(s)${step.approved ? ` (approved ${step.approved})` : ''}`;
        case 'requestApproval':
            return `request approval ${step.id}`;
        default:
            return step.step.replace(/([A-Z])/g, ' $1').toLowerCase();
    }
}

function Decision({report, resource}) {
    const decision = report.decision;
    if (!decision) {
        return null;
    }
    const mine = resource ? (decision.resources || []).filter(r => sameKey(r, resource.group, resource.kind, resource.namespace, resource.name)) : decision.resources || [];
    const pending = report.pendingApproval;
    return (
        <div className='argo-drift-decision' style={{marginTop: 12}}>
            <div>
                <b>Decision</b> ({decision.mode}, {time(decision.at)}):{' '}
                {mine.length > 0
                    ? mine.map(r => (resource ? r.actions.join(', ') : `${r.kind} ${r.name}: ${r.actions.join(', ')}`)).join('; ')
                    : 'nothing for this resource'}
                {decision.steps && decision.steps.length > 0 ? ` — steps: ${decision.steps.map(stepText).join(', ')}` : ''}
            </div>
            {(decision.held || []).map((h, i) => (
                <div key={i} className='argo-drift-held' style={{color: '#8e1b1b'}}>
                    Held by {h.guardrail}: {h.action} — {h.reason}
                    {h.until ? ` (until ${time(h.until)})` : ''}
                </div>
            ))}
            {pending ? (
                <div className='argo-drift-pending'>
                    Approval pending: <code>{pending.id}</code> — use the Application's <b>approve-drift</b> action, or{' '}
                    <code>
                        kubectl annotate application -n {report.namespace} {report.application} argo-drift.io/approve={pending.id}
                    </code>
                </div>
            ) : null}
        </div>
    );
}

function Summary({report}) {
    const d = drifted(report);
    const fields = d.reduce((n, r) => n + (r.changes ? r.changes.length : 0), 0);
    const s = report.summary || {};
    return (
        <div className='argo-drift-summary'>
            <Severity severity={worst(d)} /> {d.length} of {s.resources} resource(s) drifted ({s.modified || 0} modified, {s.missing || 0} missing, {s.extra || 0}{' '}
            extra), {fields} field(s)
            {report.driftSince ? ` · drifting since ${time(report.driftSince)}` : ''}
            {report.revision ? ` · Git ${report.revision.slice(0, 12)}` : ''}
            {report.error ? <div className='argo-drift-error'>Analysis failed: {report.error}</div> : null}
        </div>
    );
}

// ----- the registered components --------------------------------------------------------------

// Resource tab: `{resource, tree, application}` (ExtensionComponentProps); `resource` is the
// live object.
function ResourceTab({resource, application}) {
    const state = useReport(application);
    if (!state.data) {
        return <Problem state={state} what='the drift report' />;
    }
    const report = state.data;
    const meta = resource.metadata || {};
    const group = (resource.apiVersion || '').includes('/') ? resource.apiVersion.split('/')[0] : '';
    const mine = (report.resources || []).find(r => sameKey(r, group, resource.kind, meta.namespace, meta.name));
    return (
        <div className='argo-drift-resource' style={{padding: 12}}>
            {!mine ? (
                <div>argo-drift does not track {resource.kind} {meta.name} in this application.</div>
            ) : mine.status === 'synced' ? (
                <div className='argo-drift-synced'>
                    <Severity severity='none' /> {resource.kind} {meta.name} matches Git.
                </div>
            ) : (
                <>
                    <div style={{marginBottom: 8}}>
                        {resource.kind} {meta.name}: <b>{mine.status}</b> <Severity severity={mine.severity} />
                        {mine.rule ? ` rule ${mine.rule}` : ''}
                    </div>
                    <Changes resource={mine} />
                    {mine.unverified && mine.unverified.length ? <div>Unverified: {mine.unverified.join(', ')}</div> : null}
                </>
            )}
            <Decision report={report} resource={mine} />
        </div>
    );
}

// Status panel: `{application, openFlyout}` (StatusPanelComponentProps).
function StatusPanelItem({application, openFlyout}) {
    const state = useReport(application);
    const report = state.data;
    const d = drifted(report);
    const fields = d.reduce((n, r) => n + (r.changes ? r.changes.length : 0), 0);
    return (
        <div className='application-status-panel__item argo-drift-status-panel' style={{cursor: 'pointer'}} onClick={() => openFlyout()}>
            <label style={{fontSize: 12, fontWeight: 600, color: '#6d7f8b', display: 'block', marginBottom: 4}}>DRIFT</label>
            {report ? (
                <div>
                    <Severity severity={worst(d)} /> {d.length} resource(s), {fields} field(s)
                    {report.pendingApproval ? <div style={{fontSize: '0.85em'}}>approval pending</div> : null}
                </div>
            ) : state.loading ? (
                <div>…</div>
            ) : (
                <div title={state.error.message}>unavailable</div>
            )}
        </div>
    );
}

// Flyout: `{application, tree}` (StatusPanelFlyoutProps).
function Flyout({application}) {
    const state = useReport(application);
    if (!state.data) {
        return <Problem state={state} what='the drift report' />;
    }
    const report = state.data;
    return (
        <div className='argo-drift-flyout' style={{padding: 16}}>
            <h4>
                Drift of {report.namespace}/{report.application}
            </h4>
            <Summary report={report} />
            <Decision report={report} />
            {drifted(report).map(r => (
                <div key={`${r.group}/${r.kind}/${r.namespace}/${r.name}`} className='argo-drift-resource-section' style={{marginTop: 16}}>
                    <h5>
                        {r.group ? `${r.group}/` : ''}
                        {r.kind} {r.namespace ? `${r.namespace}/` : ''}
                        {r.name} — {r.status} <Severity severity={r.severity} />
                    </h5>
                    <Changes resource={r} />
                </div>
            ))}
        </div>
    );
}

// System-level page. The fleet list comes from argo-drift; only applications Argo CD lists for
// this user (its RBAC) are shown, and one of them names the request for the proxy's checks.
function FleetPage() {
    const [sort, setSort] = React.useState({key: 'severity', down: true});
    const [all, setAll] = React.useState(false);
    const state = useLoad(async () => {
        const list = await getJson('/api/v1/applications?fields=items.metadata.name,items.metadata.namespace,items.spec.project');
        const visible = (list && list.items) || [];
        if (visible.length === 0) {
            return {apps: [], visible: 0};
        }
        const fleet = await getJson(`/extensions/${EXTENSION}/api/v1/fleet`, appHeaders(visible[0]));
        const seen = new Map(visible.map(a => [`${a.metadata.namespace}/${a.metadata.name}`, a]));
        const apps = fleet.applications
            .filter(a => seen.has(`${a.namespace}/${a.application}`))
            .map(a => ({...a, project: seen.get(`${a.namespace}/${a.application}`).spec.project}));
        return {apps, visible: visible.length};
    }, []);
    if (!state.data) {
        return <Problem state={state} what='the fleet' />;
    }
    const now = Date.now();
    const shown = state.data.apps.filter(a => all || a.severity !== 'none');
    const ageOf = a => (a.driftSince ? now - new Date(a.driftSince).getTime() : -1);
    const by = sort.key === 'severity' ? (a, b) => rank(a.severity) - rank(b.severity) || ageOf(a) - ageOf(b) : (a, b) => ageOf(a) - ageOf(b) || rank(a.severity) - rank(b.severity);
    shown.sort((a, b) => (sort.down ? -by(a, b) : by(a, b)));
    const header = (key, title) => (
        <th style={{...cell, cursor: 'pointer'}} className={`argo-drift-sort-${key}`} onClick={() => setSort({key, down: sort.key === key ? !sort.down : true})}>
            {title} {sort.key === key ? (sort.down ? '▼' : '▲') : ''}
        </th>
    );
    const synced = state.data.apps.filter(a => a.severity === 'none').length;
    return (
        <div className='argo-drift-fleet' style={{padding: 24}}>
            <h3>Drift across the fleet</h3>
            <div style={{marginBottom: 8}}>
                {shown.length} application(s) shown; {synced} match Git.{' '}
                <label>
                    <input type='checkbox' checked={all} onChange={e => setAll(e.target.checked)} /> show all
                </label>
            </div>
            <table style={{width: '100%', borderCollapse: 'collapse'}}>
                <thead>
                    <tr>
                        <th style={cell}>Application</th>
                        <th style={cell}>Project</th>
                        {header('severity', 'Severity')}
                        {header('age', 'Drifting for')}
                        <th style={cell}>Drift</th>
                        <th style={cell}>Approval</th>
                    </tr>
                </thead>
                <tbody>
                    {shown.map(a => (
                        <tr key={`${a.namespace}/${a.application}`} className='argo-drift-fleet-row' data-app={`${a.namespace}/${a.application}`}>
                            <td style={cell}>
                                <a href={url(`/applications/${a.namespace}/${a.application}`)}>
                                    {a.namespace}/{a.application}
                                </a>
                            </td>
                            <td style={cell}>{a.project}</td>
                            <td style={cell}>
                                <Severity severity={a.severity} />
                            </td>
                            <td style={cell}>{age(a.driftSince, now)}</td>
                            <td style={{...cell, ...mono}}>{a.summary}</td>
                            <td style={cell}>{a.pendingApproval ? <code>{a.pendingApproval}</code> : ''}</td>
                        </tr>
                    ))}
                </tbody>
            </table>
        </div>
    );
}

((api) => {
    if (!api || !React) {
        // Not inside Argo CD's UI: nothing to register with.
        return;
    }
    api.registerResourceExtension(ResourceTab, '*', '*', 'Drift', {icon: 'fa fa-code-branch'});
    api.registerStatusPanelExtension(StatusPanelItem, 'Drift', 'argo-drift', Flyout);
    api.registerSystemLevelExtension(FleetPage, 'Drift', '/drift', 'fa-code-branch');
})(window.extensionsAPI);
