#!/usr/bin/env node
// Entry for `npm install -g` / `npx modelgate`: Node >= 22.19 runs the TypeScript sources directly.
import '../src/main.ts';
