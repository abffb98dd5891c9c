// What both pages share: their settings block, JSON from the API, the message catalogues.
// No AQI is computed here or anywhere in the browser: every index, category and colour comes
// from the server (tests/api/test_browser_pages.py checks the sources and the bundle).

export const config = JSON.parse(document.getElementById("citysense-config").textContent);

export async function getJSON(url) {
  const res = await fetch(url);  // a plain GET, so it matches the page's preload of the same URL
  if (!res.ok) {
    const err = new Error(`${url}: HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return res.json();
}

const LANGS = ["en", "zh-Hant"];
let catalogue = {};
export let lang = "en";

function preferredLanguage(fallback) {
  const asked = new URLSearchParams(location.search).get("lang") || localStorage.getItem("citysense-lang");
  if (LANGS.includes(asked)) return asked;
  return fallback || ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh-Hant" : "en");
}

/** Text of `key` in the current language, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  let text = key.split(".").reduce((node, part) => (node == null ? undefined : node[part]), catalogue);
  if (typeof text !== "string") text = key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Fill every [data-i18n] element and placeholder, set <html lang>, label the switch button. */
export function translatePage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

export async function loadLanguage(wanted) {
  lang = wanted;
  catalogue = await getJSON(`/static/i18n/${lang}.json`);
  localStorage.setItem("citysense-lang", lang);
  translatePage();
}

/** Load the preferred catalogue and make #lang switch between the two; `onChange` redraws. */
export async function setUpLanguage(onChange, fallback) {
  await loadLanguage(preferredLanguage(fallback));
  const button = document.getElementById("lang");
  const label = () => {
    button.textContent = t("switch_to");
    button.lang = lang === "en" ? "zh-Hant" : "en";
  };
  label();
  button.addEventListener("click", async () => {
    await loadLanguage(lang === "en" ? "zh-Hant" : "en");
    label();
    onChange();
  });
}

export function formatTime(iso) {
  if (!iso) return t("unknown_value");
  return new Date(iso).toLocaleString(lang === "en" ? "en-GB" : "zh-TW", { timeZone: config.timezone });
}

/** The label of a server category key in the current language. */
export function categoryName(aqi) {
  return aqi ? t(`categories.${aqi.category}`) : t("no_aqi");
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
