// The web UI's vendored libraries: their built files are copied from
// node_modules (installed by `npm ci` exactly as package-lock.json pins
// them, integrity checked) into ui/assets, where cmake/EmbedUi.cmake embeds
// them in the binary. So building cronkeep needs no Node, and a test can
// tell that what is committed is what the lockfile names.
//
//   node ui/tests/vendor.mjs           copy them (after `npm install uplot@X --save-exact` here)
//   node ui/tests/vendor.mjs --check   exit 1 when ui/assets differs from node_modules (tests/ui.sh)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, 'node_modules');
const assets = path.join(here, '..', 'assets');

// [package, file in the package, name in ui/assets]
const FILES = [
  ['uplot', 'dist/uPlot.iife.min.js', 'uPlot.iife.min.js'],
  ['uplot', 'dist/uPlot.min.css', 'uPlot.min.css'],
  ['uplot', 'LICENSE', 'uPlot.LICENSE.txt'],
];

const lock = JSON.parse(fs.readFileSync(path.join(here, 'package-lock.json'), 'utf8'));
const check = process.argv.includes('--check');
let problems = 0;
for (const [pkg, from, to] of FILES) {
  const locked = lock.packages[`node_modules/${pkg}`];
  const installed = JSON.parse(fs.readFileSync(path.join(modules, pkg, 'package.json'), 'utf8'));
  if (!locked || locked.version !== installed.version) {
    console.error(`${pkg}: node_modules has ${installed.version}, package-lock.json pins ${locked && locked.version}: run \`npm ci\` in ui/tests`);
    problems++;
    continue;
  }
  const src = fs.readFileSync(path.join(modules, pkg, from));
  const dst = path.join(assets, to);
  if (check) {
    const have = fs.existsSync(dst) ? fs.readFileSync(dst) : null;
    if (!have || !have.equals(src)) {
      console.error(`ui/assets/${to} is not ${pkg}@${locked.version}'s ${from}: run \`node ui/tests/vendor.mjs\``);
      problems++;
    } else {
      console.log(`ok   ui/assets/${to} = ${pkg}@${locked.version} ${from} (${src.length} bytes)`);
    }
  } else {
    fs.writeFileSync(dst, src);
    console.log(`copied ${pkg}@${locked.version} ${from} to ui/assets/${to}`);
  }
}
process.exit(problems ? 1 : 0);
