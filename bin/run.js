#!/usr/bin/env node
// CommonJS (bin/package.json), as is dist/cli.js: an ES module here would start Node's ES module loader,
// about 5 ms of every run (bench/RESULTS.md). The package root, where oclif reads package.json.
require('../dist/cli.js').execute({dir: require('node:path').join(__dirname, '..')})
