// The live map: every air box coloured by the server's real-time AQI, parking bays, live readings.
import L from "leaflet";
import uPlot from "uplot";
import "leaflet/dist/leaflet.css";
import "uplot/dist/uPlot.min.css";
import "./map.css";
import { config, getJSON, t, setUpLanguage, formatTime, categoryName, escapeHtml } from "./page.js";

const TAIPEI = [25.05, 121.55];
const state = { scale: config.scale, scales: {}, flagBits: [], devices: new Map(), bays: [], zones: [], generatedAt: null };
// what the browser test reads: when the markers were drawn, which marker moved and when
window.citysense = { ready: false, markersAt: null, moved: [], state };

const map = L.map("map", { keyboard: true, zoomControl: true, preferCanvas: false }).setView(TAIPEI, 12);
const boxLayer = L.layerGroup().addTo(map);
const parkingLayer = L.layerGroup().addTo(map);

function showOffline() {
  const note = document.getElementById("offline");
  note.hidden = false;
  note.dataset.i18n = "base_offline";
  note.textContent = t("base_offline");
  document.body.classList.add("offline");
}

function addBaseLayer() {
  if (!config.tiles) {
    showOffline();
    return;
  }
  const tiles = L.tileLayer(config.tiles, { attribution: config.attribution, maxZoom: 19 });
  let loaded = 0, failed = 0;
  tiles.on("tileload", () => { loaded += 1; });
  tiles.on("tileerror", () => {
    failed += 1;
    if (loaded === 0 && failed >= 4) {  // no tile at all: the tile server is out of reach
      map.removeLayer(tiles);
      showOffline();
    }
  });
  tiles.addTo(map);
}

async function addOutline() {
  const outline = await getJSON("/static/dist/taiwan-outline.json");
  L.geoJSON(outline, {
    interactive: false,
    style: f => (f.properties.layer === "coast"
      ? { color: "#40526b", weight: 1.5, fillColor: "#f4f1ea", fillOpacity: 0.6 }
      : { color: "#6b7a90", weight: 1, dashArray: "4 3", fill: false }),
  }).addTo(map);
  map.attributionControl.addAttribution("Outline: MOI Taiwan, OGDL-1.0");
}

function markerLabel(d) {
  const a = d.aqi;
  const where = d.school ? `${d.school} · ${d.name || d.device_id}` : (d.name || d.device_id);
  return `${where}: ${t("aqi")} ${a ? a.aqi : "–"} ${categoryName(a)}`;
}

function icon(d) {
  const a = d.aqi;
  const style = a ? `background:${a.color};color:${a.text_color}` : "";
  const html = `<span class="aqi-num" data-device="${escapeHtml(d.device_id)}" data-aqi="${a ? a.aqi : ""}"`
    + ` data-color="${a ? a.color : ""}" data-category="${a ? a.category : ""}" style="${style}">${a ? a.aqi : "–"}</span>`;
  const cls = "aqi-marker" + (d.flags ? " flagged" : "") + (a ? "" : " no-aqi");
  return L.divIcon({ className: cls, html, iconSize: [32, 32], iconAnchor: [16, 16], popupAnchor: [0, -14] });
}

function flagNames(flags) {
  if (!flags) return t("flags_none");
  const names = state.flagBits.filter(f => flags & f.value).map(f => f.name);
  return names.length ? names.join(", ") : String(flags);
}

function fixed(value, places = 1) {
  return value == null ? "–" : Number(value).toFixed(places);
}

function popupHtml(d) {
  const a = d.aqi;
  const csv = `/v1/readings?device_id=${encodeURIComponent(d.device_id)}&metric=pm25&format=csv`;
  const badge = a
    ? `<span class="badge" style="background:${a.color};color:${a.text_color}">${t("aqi")} ${a.aqi}</span> ${escapeHtml(categoryName(a))}`
    : `<span class="badge no-aqi">${t("aqi")} –</span> ${escapeHtml(t("no_aqi"))}`;
  const school = d.school
    ? `<a href="/schools/${encodeURIComponent(d.school)}">${escapeHtml(d.school)}</a> · ` : "";
  return `<div class="popup" data-device="${escapeHtml(d.device_id)}">
    <h3 tabindex="-1">${escapeHtml(d.name || d.device_id)}</h3>
    <p class="muted">${school}${escapeHtml(d.device_id)}</p>
    <p class="popup-aqi">${badge}</p>
    <dl>
      <dt>${t("pm25")}</dt><dd class="pm25">${fixed(d.pm25)} ${t("unit")}</dd>
      <dt>${t("pm25_raw")}</dt><dd class="pm25-raw">${fixed(d.pm25_raw)} ${t("unit")}</dd>
      <dt>${t("flags")}</dt><dd class="flags">${escapeHtml(flagNames(d.flags))}</dd>
      <dt>${t("firmware")}</dt><dd>${escapeHtml(d.fw || t("unknown_value"))}</dd>
      <dt>${t("last_seen")}</dt><dd class="last-seen">${escapeHtml(formatTime(d.time))}</dd>
    </dl>
    <p class="chart-title">${t("chart_title")}</p>
    <div class="chart" aria-label="${t("chart_title")}">${t("chart_loading")}</div>
    <p><a href="${csv}" download>${t("csv")}</a></p>
  </div>`;
}

async function drawChart(d, content, popup) {
  const box = content.querySelector(".chart");
  const body = await getJSON(`/v1/readings?device_id=${encodeURIComponent(d.device_id)}&metric=pm25&limit=10000`);
  const rows = body.results;
  box.textContent = "";
  if (!rows.length) {
    box.textContent = t("chart_empty");
    return;
  }
  const times = rows.map(r => Date.parse(r.time) / 1000);
  const chart = new uPlot({
    width: 300, height: 170, tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), config.timezone),
    scales: { x: { time: true } },
    series: [
      {},
      { label: t("series_raw"), stroke: "#9a6700", width: 1, dash: [4, 3] },
      { label: t("series_calibrated"), stroke: "#0b57d0", width: 2 },
    ],
    axes: [{}, { label: t("unit"), size: 44 }],
  }, [times, rows.map(r => r.raw), rows.map(r => r.value)], box);
  box.dataset.points = String(rows.length);
  const focused = content.contains(document.activeElement) ? document.activeElement : null;
  popup.update();  // the popup's layout for its new height; it re-attaches the content, so focus is restored
  focused?.focus();
  return chart;
}

function openDevice(id) {
  const entry = state.devices.get(id);
  if (!entry) return;
  map.setView(entry.marker.getLatLng(), Math.max(map.getZoom(), 14), { animate: false });  // the popup pans from there
  entry.marker.openPopup();
}

function drawBoxes(results) {
  const seen = new Set();
  for (const d of results) {
    seen.add(d.device_id);
    const entry = state.devices.get(d.device_id);
    if (entry) {
      entry.data = d;
      entry.marker.setLatLng([d.lat, d.lon]);
      entry.marker.setIcon(icon(d));
      entry.marker.options.title = markerLabel(d);
      entry.marker.getElement()?.setAttribute("title", markerLabel(d));
      entry.marker.getElement()?.setAttribute("aria-label", markerLabel(d));
      continue;
    }
    const marker = L.marker([d.lat, d.lon], { icon: icon(d), title: markerLabel(d), alt: markerLabel(d), keyboard: true, riseOnHover: true });
    const item = { data: d, marker };
    marker.bindPopup("", { maxWidth: 340, minWidth: 300 });
    marker.on("popupopen", e => {
      // the content is an element built once per opening, so the chart drawn into it stays
      const content = document.createElement("div");
      content.innerHTML = popupHtml(item.data);
      e.popup.setContent(content);
      content.querySelector("h3").focus();
      content.addEventListener("keydown", ev => {  // Escape closes the popup and gives focus back to the marker
        if (ev.key !== "Escape") return;
        marker.closePopup();
        marker.getElement()?.focus();
      });
      drawChart(item.data, content, e.popup).catch(err => { console.error(err); });
    });
    marker.on("add", () => marker.getElement()?.setAttribute("aria-label", markerLabel(item.data)));
    marker.addTo(boxLayer);
    state.devices.set(d.device_id, item);
  }
  for (const [id, entry] of state.devices) {
    if (!seen.has(id)) {
      boxLayer.removeLayer(entry.marker);
      state.devices.delete(id);
    }
  }
}

function drawLegend() {
  const scale = state.scales[state.scale];
  const items = scale.categories.map(k => `<li><span class="sw" style="background:${k.color}"></span>`
    + `<span class="range">${k.aqi_low}–${k.aqi_high}</span> ${escapeHtml(t(`categories.${k.key}`))}</li>`);
  items.push(`<li><span class="sw no-aqi"></span><span class="range">–</span> ${escapeHtml(t("no_aqi"))}</li>`);
  document.getElementById("legend").innerHTML = items.join("");
}

function listButton(d) {
  const a = d.aqi;
  const swatch = a ? `<span class="badge" style="background:${a.color};color:${a.text_color}">${a.aqi}</span>` : `<span class="badge no-aqi">–</span>`;
  return `<button type="button" data-device="${escapeHtml(d.device_id)}">${swatch} ${escapeHtml(categoryName(a))} · `
    + `${escapeHtml(d.school || "")} ${escapeHtml(d.name || d.device_id)}</button>`;
}

function drawTop() {
  const rated = [...state.devices.values()].map(e => e.data).filter(d => d.aqi);
  rated.sort((a, b) => b.aqi.aqi - a.aqi.aqi);
  document.getElementById("top").innerHTML = rated.slice(0, 10).map(d => `<li>${listButton(d)}</li>`).join("");
}

function drawSearch() {
  const query = document.getElementById("search").value.trim().toLowerCase();
  const out = document.getElementById("results");
  if (!query) {
    out.innerHTML = "";
    return;
  }
  const all = [...state.devices.values()].map(e => e.data);
  const schools = [...new Set(all.map(d => d.school).filter(s => s && s.toLowerCase().includes(query)))].slice(0, 6);
  const boxes = all.filter(d => d.device_id.includes(query) || (d.name || "").toLowerCase().includes(query)).slice(0, 6);
  const html = schools.map(s => `<li><button type="button" data-school="${escapeHtml(s)}">${escapeHtml(s)}</button>`
    + ` <a href="/schools/${encodeURIComponent(s)}">${t("open_school_page")}</a></li>`)
    .concat(boxes.map(d => `<li>${listButton(d)}</li>`));
  out.innerHTML = html.length ? html.join("") : `<li class="muted">${t("search_none")}</li>`;
}

function drawParking() {
  parkingLayer.clearLayers();
  const byZone = new Map();
  for (const bay of state.bays) {
    const letter = { free: "F", occupied: "O", unknown: "?" }[bay.status];
    const label = `${bay.zone} ${bay.spot_id}: ${t(`bay_${bay.status}`)}`;
    L.marker([bay.lat, bay.lon], {
      icon: L.divIcon({ className: `bay bay-${bay.status}`, html: `<span data-status="${bay.status}">${letter}</span>`, iconSize: [16, 16] }),
      title: label, alt: label, keyboard: false,
    }).addTo(parkingLayer);
    if (!byZone.has(bay.zone)) byZone.set(bay.zone, []);
    byZone.get(bay.zone).push([bay.lat, bay.lon]);
  }
  const items = [];
  for (const z of state.zones) {
    const counts = t("zone_counts", { free: z.free, occupied: z.occupied, unknown: z.unknown });
    const where = byZone.get(z.zone);
    if (where) {
      const centre = L.latLngBounds(where).getCenter();
      L.marker(centre, {
        icon: L.divIcon({ className: "zone-label", html: `<span><b>${escapeHtml(z.zone)}</b> ${escapeHtml(counts)}</span>`, iconSize: null }),
        keyboard: false, interactive: false,
      }).addTo(parkingLayer);
    }
    items.push(`<li><button type="button" data-zone="${escapeHtml(z.zone)}"${where ? "" : " disabled"}><b>${escapeHtml(z.zone)}</b> ${escapeHtml(counts)}</button></li>`);
  }
  document.getElementById("zones").innerHTML = items.join("");
}

function drawStatus() {
  const time = state.generatedAt ? formatTime(state.generatedAt) : "";
  document.getElementById("status").textContent = t("status_boxes", { n: state.devices.size, time });
}

function redrawText() {
  drawLegend();
  drawTop();
  drawSearch();
  drawParking();
  drawStatus();
  for (const entry of state.devices.values()) {
    entry.marker.getElement()?.setAttribute("aria-label", markerLabel(entry.data));
    entry.marker.getElement()?.setAttribute("title", markerLabel(entry.data));
  }
  if (document.getElementById("offline").hidden === false) showOffline();
}

function fetchBoxes() {
  return getJSON(`/v1/map/devices?scale=${encodeURIComponent(state.scale)}`);
}

async function loadBoxes(pending) {
  const body = await (pending || fetchBoxes());
  state.generatedAt = body.meta.generated_at;
  drawBoxes(body.results);
  drawTop();
  drawSearch();
  drawStatus();
  document.body.dataset.scale = body.meta.scale;
}

async function loadParking() {
  const [zones, bays] = await Promise.all([getJSON("/v1/parking/zones"), getJSON("/v1/parking/bays")]);
  state.zones = zones.results;
  state.bays = bays.results;
  drawParking();
}

function listen() {
  const since = state.generatedAt ? `&since=${encodeURIComponent(state.generatedAt)}` : "";
  const stream = new EventSource(`/v1/stream?metric=pm25&poll_s=1${since}`);
  stream.addEventListener("reading", ev => {
    const r = JSON.parse(ev.data);
    const entry = state.devices.get(r.device_id);
    if (!entry) return;
    const d = entry.data;
    d.pm25 = r.value;
    d.pm25_raw = r.raw;
    d.flags = r.flags;
    d.time = r.time;
    if (r.lat != null && r.lon != null && (r.lat !== d.lat || r.lon !== d.lon)) {
      d.lat = r.lat;
      d.lon = r.lon;
      entry.marker.setLatLng([r.lat, r.lon]);
      window.citysense.moved.push({ device: r.device_id, lat: r.lat, lon: r.lon, at: Date.now() });
    }
    const el = entry.marker.getElement();
    if (el) el.classList.toggle("flagged", Boolean(r.flags));
    const popup = entry.marker.getPopup();
    if (popup && popup.isOpen()) {
      const root = popup.getElement();
      if (!root.querySelector(".pm25")) return;
      root.querySelector(".pm25").textContent = `${fixed(d.pm25)} ${t("unit")}`;
      root.querySelector(".pm25-raw").textContent = `${fixed(d.pm25_raw)} ${t("unit")}`;
      root.querySelector(".flags").textContent = flagNames(d.flags);
      root.querySelector(".last-seen").textContent = formatTime(d.time);
    }
  });
}

function wirePanel() {
  const panel = document.getElementById("panel");
  panel.addEventListener("click", ev => {
    const button = ev.target.closest("button");
    if (!button) return;
    if (button.dataset.device) openDevice(button.dataset.device);
    if (button.dataset.school) {
      const where = [...state.devices.values()].filter(e => e.data.school === button.dataset.school).map(e => e.marker.getLatLng());
      if (where.length) map.fitBounds(L.latLngBounds(where).pad(0.5), { maxZoom: 16 });
    }
    if (button.dataset.zone) {
      const where = state.bays.filter(b => b.zone === button.dataset.zone).map(b => [b.lat, b.lon]);
      if (where.length) map.fitBounds(L.latLngBounds(where).pad(0.5), { maxZoom: 18 });
    }
  });
  document.getElementById("search").addEventListener("input", drawSearch);
  const select = document.getElementById("scale");
  select.innerHTML = Object.values(state.scales).map(s => `<option value="${s.key}">${escapeHtml(s.name)}</option>`).join("");
  select.value = state.scale;
  select.addEventListener("change", async () => {
    state.scale = select.value;
    drawLegend();
    await loadBoxes();
  });
}

async function start() {
  const boxes = fetchBoxes();  // the slow request first, while the rest loads
  addBaseLayer();
  const [scales, flags] = await Promise.all([getJSON("/v1/aqi/scales"), getJSON("/v1/flags"),
    setUpLanguage(redrawText, "en")]);
  for (const s of scales) state.scales[s.key] = s;
  state.flagBits = flags.results;
  wirePanel();
  drawLegend();
  await loadBoxes(boxes);
  window.citysense.markersAt = performance.now();
  performance.mark("citysense-markers");
  window.citysense.ready = true;
  listen();
  addOutline().catch(err => console.error(err));
  loadParking().catch(err => console.error(err));
  setInterval(() => loadBoxes().catch(err => console.error(err)), 60_000);
  setInterval(() => loadParking().catch(err => console.error(err)), 30_000);
}

start().catch(err => {
  console.error(err);
  document.getElementById("status").textContent = String(err);
});
