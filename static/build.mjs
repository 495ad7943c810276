// Bundles the counter app into static/dist/ with content-hashed names and writes
// static/dist/manifest.json, which tells the server the page and the hashed files.
// Run from anywhere: `node static/build.mjs` (the Makefile does when sources changed).
import { readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const src = join(root, "static");
const out = join(src, "dist");
const entries = ["app.js", "style.css"];

await rm(out, { recursive: true, force: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: entries.map((name) => join(src, name)),
  entryNames: "[name]-[hash]",
  outdir: out,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  metafile: true,
  logLevel: "warning",
});

// Entry name (app.js) -> hashed file name (app-QWERTY12.js).
const assets = {};
const hashed = [];
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  hashed.push(basename(file));
  if (output.entryPoint) {
    assets[basename(output.entryPoint)] = basename(file);
  }
}
for (const name of entries) {
  if (!assets[name]) throw new Error(`esbuild produced no output for ${name}`);
}

// The page references its assets by entry name; point it at the hashed files.
let html = await readFile(join(src, "index.html"), "utf8");
for (const name of entries) {
  const attr = name.endsWith(".css") ? "href" : "src";
  const before = `${attr}="${name}"`;
  if (!html.includes(before)) throw new Error(`static/index.html has no ${before}`);
  html = html.replace(before, `${attr}="/static/dist/${assets[name]}"`);
}
await writeFile(join(out, "index.html"), html);

// Written last: the Makefile treats the manifest as "the build is complete".
const manifest = { page: "index.html", assets, hashed: hashed.sort() };
await writeFile(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`built ${relative(root, out)}: ${Object.values(assets).join(", ")}`);
