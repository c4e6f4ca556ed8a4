// The test page: what Argo CD's UI gives an extension, and nothing else. React 19 (Argo CD 3.6's,
// ui/package.json) on `window.React`; `window.extensionsAPI` with the registration functions and
// signatures of ui/src/app/shared/services/extensions-service.ts; then argocd-server's own
// `/extensions.js` (every extension*.js under /tmp/extensions, as the real UI loads it), and the
// registered components rendered with the props Argo CD passes them, from Argo CD's API.
import * as React from 'react';
import {createRoot} from 'react-dom/client';
import {flushSync} from 'react-dom';

window.React = React;
const registered = {resource: [], system: [], statusPanel: []};
window.extensions = {resources: {}};
window.extensionsAPI = {
    registerResourceExtension: (component, group, kind, title, opts) => registered.resource.push({component, group, kind, title, icon: opts && opts.icon}),
    registerSystemLevelExtension: (component, title, path, icon) => registered.system.push({component, title, path, icon}),
    registerAppViewExtension: () => {},
    registerStatusPanelExtension: (component, title, id, flyout) => registered.statusPanel.push({component, title, id, flyout}),
    registerTopBarActionMenuExt: () => {}
};

// A glob as minimatch takes the UI's `group`/`kind` patterns: `*` or a literal.
const matches = (pattern, s) => new RegExp('^' + pattern.split('*').map(p => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$').test(s);

async function api(path) {
    const r = await fetch(path, {credentials: 'same-origin'});
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
}

function load(src) {
    return new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = src;
        s.onload = resolve;
        s.onerror = () => reject(new Error(`loading ${src}`));
        document.head.appendChild(s);
    });
}

async function main() {
    const q = new URLSearchParams(location.search);
    await load('extensions.js');
    document.body.dataset.registered = JSON.stringify({
        resource: registered.resource.map(e => [e.group, e.kind, e.title]),
        system: registered.system.map(e => [e.title, e.path, e.icon]),
        statusPanel: registered.statusPanel.map(e => [e.title, e.id, !!e.flyout])
    });
    const root = createRoot(document.getElementById('root'));
    const view = q.get('view');
    if (view === 'system') {
        const ext = registered.system[0];
        root.render(<ext.component />);
        return;
    }
    const [ns, name] = q.get('app').split('/');
    const application = await api(`api/v1/applications/${name}?appNamespace=${ns}`);
    const tree = await api(`api/v1/applications/${name}/resource-tree?appNamespace=${ns}`);
    if (view === 'status') {
        const ext = registered.statusPanel[0];
        const Flyout = ext.flyout;
        const Page = () => {
            const [open, setOpen] = React.useState(false);
            return (
                <div>
                    <div className='status-panel'>
                        <ext.component application={application} openFlyout={() => setOpen(true)} />
                    </div>
                    {open ? (
                        <div className='flyout' style={{borderTop: '2px solid #ccc'}}>
                            <Flyout application={application} tree={tree} />
                        </div>
                    ) : null}
                </div>
            );
        };
        root.render(<Page />);
        return;
    }
    // The resource tab: Argo CD passes the live object it fetched with this same call.
    const [group, version, kind, namespace, resourceName] = q.get('resource').split('/');
    const params = new URLSearchParams({appNamespace: ns, namespace, resourceName, version, kind, group});
    const live = await api(`api/v1/applications/${name}/resource?${params}`);
    const resource = JSON.parse(live.manifest);
    const tabs = registered.resource.filter(e => matches(e.group, group) && matches(e.kind, kind));
    flushSync(() =>
        root.render(
            <div>
                {tabs.map(t => (
                    <div key={t.title} className='tab' data-title={t.title}>
                        <t.component resource={resource} tree={tree} application={application} />
                    </div>
                ))}
            </div>
        )
    );
}

main().catch(e => {
    document.body.dataset.failed = String(e && e.message);
});
