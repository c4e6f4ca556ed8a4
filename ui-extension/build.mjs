// Build the extension: one IIFE file, JSX to `React.createElement` on the page's React (no
// React bundled), into deploy/argocd-extension/extension-argo-drift.js or the path given.
//   node build.mjs [OUTFILE]
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {build} from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const outfile = process.argv[2] || path.join(here, '../deploy/argocd-extension/extension-argo-drift.js');
await build({
    absWorkingDir: here,
    entryPoints: ['src/index.jsx'],
    bundle: true,
    format: 'iife',
    target: 'es2019',
    jsxFactory: 'React.createElement',
    jsxFragment: 'React.Fragment',
    legalComments: 'none',
    charset: 'utf8',
    // React comes from the page (window.React); importing it would bundle a second copy.
    external: ['react', 'react-dom'],
    outfile,
    logLevel: 'warning'
});
