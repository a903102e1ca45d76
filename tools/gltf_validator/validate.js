// node validate.js FILE...: the Khronos glTF validator's report on each file, as one JSON object
// {file: {numErrors, numWarnings, messages: [{code, message, pointer, severity}]}} on stdout.
// Used by tests/test_gltf_validator.py; `make setup` installs the validator (npm ci in this folder).
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function main(files) {
  const out = {};
  for (const file of files) {
    let report;
    try {
      report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
        uri: path.basename(file),
        maxIssues: 100,
        externalResourceFunction: (uri) => new Promise((resolve, reject) => {
          const target = path.resolve(path.dirname(file), decodeURIComponent(uri));
          fs.readFile(target, (err, data) => (err ? reject(err.toString()) : resolve(new Uint8Array(data))));
        }),
      });
    } catch (err) {  // not glTF at all: one fatal issue, like the validator's own command line reports
      out[file] = {numErrors: 1, numWarnings: 0,
                   messages: [{code: "UNREADABLE", message: String(err), pointer: "", severity: 0}]};
      continue;
    }
    out[file] = {
      numErrors: report.issues.numErrors,
      numWarnings: report.issues.numWarnings,
      messages: report.issues.messages.map((m) => ({code: m.code, message: m.message, pointer: m.pointer,
                                                    severity: m.severity})),
    };
  }
  process.stdout.write(JSON.stringify(out));
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
