// A school's page: its AQI now in big type with what it means outdoors, its boxes, a week, a day
// against the city, the class export. Every number and colour comes from /v1/schools/{school}.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./school.css";
import { config, getJSON, t, setUpLanguage, formatTime, categoryName, escapeHtml } from "./page.js";

let summary = null;
let charts = [];
window.citysense = { ready: false, summary: null };

function chartWidth(el) {
  return Math.max(280, Math.min(el.clientWidth || 600, 1100));
}

function drawCharts() {
  for (const c of charts) c.destroy();
  charts = [];
  const week = document.getElementById("week-chart");
  const day = document.getElementById("day-chart");
  week.textContent = "";
  day.textContent = "";
  const axes = [{}, { label: t("unit"), size: 50 }];
  const tzDate = ts => uPlot.tzDate(new Date(ts * 1e3), config.timezone);
  charts.push(new uPlot({
    width: chartWidth(week), height: 240, tzDate, scales: { x: { time: true } }, axes,
    series: [{}, { label: t("this_school"), stroke: "#0b57d0", width: 2 }],
  }, [summary.week.time, summary.week.pm25], week));
  // the school's hours against the city's, aligned on the city's hours (the city has every hour the school has)
  const city = summary.day.city;
  const bySchool = new Map(summary.day.school.time.map((h, i) => [h, summary.day.school.pm25[i]]));
  charts.push(new uPlot({
    width: chartWidth(day), height: 240, tzDate, scales: { x: { time: true } }, axes,
    series: [{}, { label: t("this_school"), stroke: "#0b57d0", width: 2 }, { label: t("city"), stroke: "#6b4c00", width: 2, dash: [6, 4] }],
  }, [city.time, city.time.map(h => (bySchool.has(h) ? bySchool.get(h) : null)), city.pm25], day));
}

function draw() {
  const school = summary ? summary.school : config.school;
  document.getElementById("school-name").textContent = t("school_title", { school });
  document.title = `citysense · ${school}`;
  const big = document.getElementById("now-aqi");
  const now = summary && summary.now;
  if (now) {
    big.textContent = String(now.aqi);
    big.style.background = now.color;
    big.style.color = now.text_color;
    big.dataset.aqi = String(now.aqi);
    big.dataset.category = now.category;
    big.setAttribute("aria-label", `${t("aqi")} ${now.aqi}, ${categoryName(now)}`);
    document.getElementById("now-label").textContent = `${t("aqi")} ${now.aqi} · ${categoryName(now)}`;
    document.getElementById("now-advice").textContent = t(`advice.${now.category}`);
    document.getElementById("now-source").textContent = t("worst_box", { device: now.device_id });
  } else {
    big.textContent = "–";
    big.removeAttribute("style");
    big.setAttribute("aria-label", t("no_aqi"));
    document.getElementById("now-label").textContent = summary ? t("no_aqi_school") : t("unknown_school");
    document.getElementById("now-advice").textContent = "";
    document.getElementById("now-source").textContent = "";
  }
  const flag = summary && summary.flag;
  const flagLine = document.getElementById("now-flag");
  flagLine.textContent = flag
    ? t("gate_flag", { category: categoryName(flag), aqi: flag.aqi ?? "–", since: formatTime(flag.since) })
    : "";
  if (flag) flagLine.dataset.colour = flag.colour; else delete flagLine.dataset.colour;
  const name = encodeURIComponent(school);
  document.getElementById("export-csv").href = `/v1/export/school.csv?school=${name}`;
  document.getElementById("export-sheet").href = `/v1/export/school.csv?school=${name}&format=spreadsheet`;
  const rows = summary ? summary.devices : [];
  document.querySelector("#boxes tbody").innerHTML = rows.map(d => {
    const a = d.aqi;
    const badge = a ? `<span class="badge" style="background:${a.color};color:${a.text_color}">${a.aqi}</span> ${escapeHtml(categoryName(a))}`
      : escapeHtml(t("no_aqi"));
    return `<tr data-device="${escapeHtml(d.device_id)}"><td>${escapeHtml(d.name || d.device_id)}<br><span class="muted">${escapeHtml(d.device_id)}</span></td>`
      + `<td>${badge}</td><td>${d.pm25 == null ? "–" : Number(d.pm25).toFixed(1)} ${t("unit")}</td><td>${escapeHtml(formatTime(d.time))}</td></tr>`;
  }).join("");
  if (summary) drawCharts();
}

async function load() {
  try {
    summary = await getJSON(`/v1/schools/${encodeURIComponent(config.school)}?scale=${encodeURIComponent(config.scale)}`);
  } catch (err) {
    if (err.status !== 404) throw err;
    summary = null;
  }
  window.citysense.summary = summary;
  draw();
  window.citysense.ready = true;
}

async function start() {
  await setUpLanguage(draw, "zh-Hant");
  await load();
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => summary && drawCharts(), 200);
  });
  setInterval(() => load().catch(err => console.error(err)), 120_000);
}

start().catch(err => console.error(err));
