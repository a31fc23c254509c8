// One task: every field, its stats as a chart over time, its logs, and its actions.

import { fill, h } from "../dom.js";
import {
  bytes, duration, isActive, methodWords, number, ONLINE, time, typeWords,
} from "../format.js";
import {
  actionButtons, pagerButtons, progressOf, REFRESH_MS, sizeBars, statusBadge,
} from "./common.js";

const LOG_PAGE = 20;
const CHART_POINTS = 90; // three minutes of samples
const SVG = "http://www.w3.org/2000/svg";

export function render(ctx, main, [taskId]) {
  const samples = [];
  const logState = { offset: 0, level: "" };
  let task = null;
  let timer = null;
  let stopped = false;

  const heading = h("h1", {}, "Task");
  const status = h("div", { class: "status-line" });
  const actions = h("div", { class: "actions" });
  const failure = h("div", { class: "failure", role: "alert", hidden: true });
  const progress = h("div", { class: "card" });
  const chart = h("div", { class: "chart-wrap" });
  const fields = h("dl", { class: "fields" });
  const level = h("select", { id: "log-level" },
    h("option", { value: "" }, "All levels"),
    ["INFO", "WARN", "ERROR"].map((l) => h("option", { value: l }, l)));
  const logBody = h("tbody");
  const logPager = h("div", { class: "pager" });

  main.append(
    h("p", {}, h("a", { href: "#/tasks" }, "← Migration tasks")),
    h("div", { class: "title-row" }, heading, actions),
    status,
    failure,
    h("section", { "aria-labelledby": "progress-title" },
      h("h2", { id: "progress-title" }, "Progress"), progress, chart),
    h("section", { "aria-labelledby": "fields-title" },
      h("h2", { id: "fields-title" }, "Details"), fields),
    h("section", { "aria-labelledby": "logs-title" },
      h("div", { class: "title-row" },
        h("h2", { id: "logs-title" }, "Logs"),
        h("div", { class: "filters" }, h("label", { for: "log-level" }, "Level"), level)),
      h("div", { class: "table-wrap" },
        h("table", { class: "logs" },
          h("thead", {}, h("tr", {},
            ["Time", "Level", "Message"].map((l) => h("th", { scope: "col" }, l)))),
          logBody)),
      logPager),
  );

  level.addEventListener("change", () => {
    logState.level = level.value;
    logState.offset = 0;
    loadLogs();
  });

  async function refresh() {
    clearTimeout(timer);
    try {
      const [detail, stats] = await Promise.all([
        ctx.api.get(`/migration-task/${taskId}`),
        ctx.api.get(`/migration-task/${taskId}/stats`),
      ]);
      if (stopped) return;
      const changed = !task || task.status !== detail.status;
      task = detail;
      samples.push({ at: Date.now(), stats });
      if (samples.length > CHART_POINTS) samples.shift();
      drawTask(stats, changed);
      if (changed || isActive(task.status)) loadLogs();
    } catch (err) {
      if (stopped) return;
      if (err.status === 404) {
        fill(main, h("p", {}, `Task ${taskId}: ${err.message}`),
          h("p", {}, h("a", { href: "#/tasks" }, "Back to the tasks")));
        return;
      }
      ctx.notify(err.message, "error");
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  function drawTask(stats, changed) {
    heading.textContent = task.task_name;
    document.title = `${task.task_name} · dcs-migration`;
    fill(status, statusBadge(task.status), " ", typeWords(task.migration_type), " · ",
      methodWords(task.migration_method));
    if (changed) fill(actions, actionButtons(ctx, task, () => refresh()));
    failure.hidden = !task.error_message;
    failure.textContent = task.error_message ? `Error: ${task.error_message}` : "";
    fill(progress, progressOf(task, stats), statCards(stats));
    sizeBars(progress);
    fill(chart, drawChart(samples, task.migration_type === ONLINE));
    fill(fields, describe(task, ""));
  }

  function statCards(stats) {
    const online = task.migration_type === ONLINE;
    const items = [
      ["Progress", `${stats.full_migration_progress}%`],
      ["Keys in target", number(stats.target_dbsize ?? "")],
      ["Keys in source", stats.source_dbsize === null ? "" : number(stats.source_dbsize)],
      ["Operations", `${number(stats.target_ops)} /s`],
      ["Input", `${number(Math.round(Number(stats.target_input_kbps)))} KB/s`],
      online ? ["Behind", `${bytes(stats.offset)} (${duration(stats.lag_ms ?? 0)})`]
        : ["Read", bytes(stats.offset)],
    ];
    if (online) {
      items.push(["Resyncs", `${stats.resyncs_partial} partial, ${stats.resyncs_full} full`]);
    } else if (stats.commands_refused) {
      items.push(["Commands refused", number(stats.commands_refused)]);
    }
    return h("dl", { class: "stat-cards" },
      items.filter(([, value]) => value !== "").map(([label, value]) => h("div", {}, h("dt", {}, label), h("dd", {}, value))));
  }

  async function loadLogs() {
    try {
      const answer = await ctx.api.get(`/migration-task/${taskId}/logs`, {
        offset: logState.offset, limit: LOG_PAGE, log_level: logState.level || undefined,
      });
      if (stopped) return;
      fill(logBody, answer.migration_logs.length
        ? answer.migration_logs.map((entry) => h("tr", { class: `log-${entry.log_level.toLowerCase()}` },
          h("td", { class: "nowrap" }, time(entry.created_at)),
          h("td", {}, entry.log_level),
          h("td", { class: "message" }, entry.message)))
        : h("tr", {}, h("td", { colspan: 3, class: "empty" }, "No log at this level.")));
      fill(logPager, pagerButtons({
        offset: logState.offset,
        count: answer.log_num,
        size: LOG_PAGE,
        noun: "logs",
        total: ` (${answer.log_num} entries)`,
        go: (offset) => { logState.offset = offset; loadLogs(); },
      }));
    } catch (err) {
      if (!stopped) ctx.notify(`Logs: ${err.message}`, "error");
    }
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Every field of the detail, nested objects as their own lists; passwords never come. */
function describe(value, prefix) {
  return Object.entries(value)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([key, v]) => {
      const name = prefix ? `${prefix}.${key}` : key;
      if (Array.isArray(v)) {
        return [h("dt", {}, name), h("dd", {}, v.length === 0 ? "none" : h("ul", {},
          v.map((item) => h("li", {}, typeof item === "object" ? itemWords(item) : String(item)))))];
      }
      if (typeof v === "object") return describe(v, name);
      return [h("dt", {}, name), h("dd", { class: key.endsWith("_at") ? "" : "mono" },
        key.endsWith("_at") ? time(v) : String(v))];
    });
}

function itemWords(item) {
  if ("file_name" in item) {
    return [item.file_name, item.size ? ` (${bytes(item.size)})` : "", item.update_at ? `, ${item.update_at}` : ""].join("");
  }
  return JSON.stringify(item);
}

/** Throughput over time, as an SVG chart: ops/s and KB/s, and lag for online tasks. */
function drawChart(samples, online) {
  const series = [
    ["ops/s", "ops", (s) => Number(s.target_ops) || 0],
    ["KB/s", "kbps", (s) => Number(s.target_input_kbps) || 0],
  ];
  if (online) series.push(["lag ms", "lag", (s) => Number(s.lag_ms) || 0]);
  const width = 600;
  const height = 160;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.samples = String(samples.length);
  svg.setAttribute("role", "img");
  const last = samples[samples.length - 1];
  const words = last ? series.map(([label, , pick]) => `${label} ${number(Math.round(pick(last.stats)))}`)
    .join(", ") : "no sample yet";
  svg.setAttribute("aria-label", `Throughput over the last ${samples.length} samples: now ${words}`);
  const frame = document.createElementNS(SVG, "rect");
  frame.setAttribute("x", 0);
  frame.setAttribute("y", 0);
  frame.setAttribute("width", width);
  frame.setAttribute("height", height);
  frame.setAttribute("class", "chart-frame");
  svg.append(frame);
  for (const [, key, pick] of series) {
    const values = samples.map((s) => pick(s.stats));
    const top = Math.max(1, ...values);
    const points = values.map((v, i) => {
      // The newest sample at the right edge, older ones to its left.
      const x = width - ((values.length - 1 - i) / (CHART_POINTS - 1)) * width;
      const y = height - 4 - (v / top) * (height - 8);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", `line line-${key}`);
    svg.append(line);
  }
  const legend = h("ul", { class: "legend" }, series.map(([label, key, pick]) => {
    const values = samples.map((s) => pick(s.stats));
    const peak = values.length ? Math.max(...values) : 0;
    return h("li", { class: `legend-${key}` },
      `${label}: now ${last ? number(Math.round(pick(last.stats))) : "–"}, peak ${number(Math.round(peak))}`);
  }));
  return [svg, legend];
}
