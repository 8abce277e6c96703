#!/usr/bin/env node
// Entry for `npx modelgate` (and `npm install -g`). The sources are TypeScript run by Node's type
// stripping, which needs Node >= 22.19. There is deliberately no `engines` field in package.json:
// npm checks it against the Node that runs npm itself, so every `npx modelgate` on a machine whose
// system Node is older warned EBADENGINE even though `npx` runs this file on the Node 24 that
// `npm ci` installed into node_modules/.bin. The check that matters is this one, on the Node that
// actually runs modelgate; the import is dynamic so that it runs before any TypeScript is loaded.
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(
    `modelgate: needs Node.js >= 22.19 to run its TypeScript sources, got ${process.version}.\n` +
      'In a checkout, `npm ci` installs the pinned Node 24 and `npx modelgate` uses it.\n',
  );
  process.exit(1);
}
await import('../src/main.ts');
