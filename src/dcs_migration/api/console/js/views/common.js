// Pieces the views share: status badges, progress bars, the task actions.

import { h } from "../dom.js";
import {
  bytes, duration, IMPORT, isActive, number, ONLINE, statusWords,
} from "../format.js";

export const REFRESH_MS = 2000;

export function statusBadge(status) {
  const [words, tone] = statusWords(status);
  return h("span", { class: `status status-${tone}`, title: status, "data-status": status }, words);
}

/** The bar and words of a task's progress, from its stats (null: none yet). */
export function progressOf(task, stats) {
  if (!stats) return h("span", { class: "muted" }, isActive(task.status) ? "…" : "");
  const percent = Math.max(0, Math.min(100, Number(stats.full_migration_progress) || 0));
  if (task.migration_type === ONLINE && task.status === "INCRMIGEATING") {
    const behind = Number(stats.offset) || 0;
    return h("div", { class: "progress-text" },
      h("span", { class: behind === 0 ? "in-sync" : "" },
        behind === 0 ? "In sync" : `${bytes(behind)} behind`),
      stats.lag_ms !== null && stats.lag_ms !== undefined
        ? ` · lag ${duration(stats.lag_ms)}` : "",
      ` · ${number(stats.target_ops)} ops/s`);
  }
  const words = task.migration_type === IMPORT
    ? `${percent}% · ${bytes(stats.offset)} read · ${number(stats.target_dbsize)} keys`
    : `${percent}% · ${number(stats.target_dbsize || 0)} keys`;
  return h("div", { class: "progress" },
    h("div", {
      class: "bar",
      role: "progressbar",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": percent,
      "aria-label": `Progress of ${task.task_name}`,
    }, h("div", { class: "fill", style: null, "data-percent": percent })),
    h("span", { class: "progress-text" }, words));
}

/** Set the bars' widths (inline styles are not allowed by the page's policy). */
export function sizeBars(root) {
  for (const fill of root.querySelectorAll(".fill[data-percent]")) {
    fill.style.width = `${fill.dataset.percent}%`;
  }
}

/** The actions the task's status allows: [label, key] pairs. */
export function actionsFor(task) {
  const { status } = task;
  const online = task.migration_type === ONLINE;
  const out = [];
  if (["MIGRATING", "FULLMIGRATING", "INCRMIGEATING", "RUNNING"].includes(status)) {
    out.push(["Stop", "stop"]);
  }
  if (online && status === "RUNNING") out.push(["Configure", "configure"]);
  if (online && status === "INCRMIGEATING") out.push(["Sync stop", "sync-stop"]);
  if (online && ["TERMINATED", "MIGRATION_FAILED"].includes(status)) {
    out.push(["Restart", "restart"]);
  }
  if (!online && ["FAILED", "TERMINATED"].includes(status)) out.push(["Resume", "resume"]);
  if (!isActive(status)) out.push(["Delete", "delete"]);
  return out;
}

const CONFIRMATIONS = {
  stop: ["Stop the task?", "It stops where it is; what was written stays.", "Stop"],
  "sync-stop": [
    "Stop syncing?",
    "The service waits until the target has every write the source acknowledged, then stops "
      + "the task: the moment to point your clients at the target.",
    "Sync stop",
  ],
  restart: ["Restart the task?", "It continues from where it stopped, by partial resync when "
    + "the source still holds the commands it missed.", "Restart"],
  resume: ["Resume the import?", "It continues from its last checkpoint, unless its files "
    + "changed since.", "Resume"],
  delete: ["Delete the task?", "Its record and logs are deleted. The data it wrote stays.",
    "Delete"],
};

/** Confirm, then run one action on one task; true when it was done. */
export async function runAction(ctx, task, action) {
  if (action === "configure") { // a form, not a call: nothing to confirm
    ctx.navigate(`#/configure/${task.task_id}`);
    return false;
  }
  const [title, text, label] = CONFIRMATIONS[action];
  const confirmed = await ctx.confirm(`${title}`, `${task.task_name}: ${text}`, label);
  if (!confirmed) return false;
  const id = task.task_id;
  try {
    switch (action) {
      case "stop":
        await ctx.api.post(`/migration-task/${id}/stop`);
        ctx.notify(`${task.task_name}: stopping.`);
        break;
      case "sync-stop":
        ctx.notify(`${task.task_name}: waiting for the target to catch up…`);
        await ctx.api.post(`/migration-task/${id}/sync-stop`);
        ctx.notify(`${task.task_name}: in sync and stopped.`, "success");
        break;
      case "restart":
        outcome(ctx, await ctx.api.post("/migration-tasks/batch-restart", { migration_tasks: [id] }),
          "restarted");
        break;
      case "resume":
        await ctx.api.put(`/migration-task/${id}`, { resume_mode: "auto" });
        ctx.notify(`${task.task_name}: resuming.`);
        break;
      case "delete":
        await ctx.api.delete("/migration-tasks/delete", { task_id_list: [id] });
        ctx.notify(`${task.task_name}: deleted.`);
        break;
      default:
        return false;
    }
    return true;
  } catch (err) {
    ctx.notify(`${task.task_name}: ${err.message}`, "error");
    return false;
  }
}

/** Report a batch answer (`{migration_tasks: [{task_id, result, error_msg}]}`). */
export function outcome(ctx, answer, done) {
  const failed = (answer.migration_tasks || []).filter((r) => r.result !== "success");
  if (failed.length === 0) {
    ctx.notify(`${answer.migration_tasks.length} task(s) ${done}.`, "success");
  } else {
    ctx.notify(failed.map((r) => `${r.task_id}: ${r.error_msg}`).join("; "), "error");
  }
}

export function actionButtons(ctx, task, after) {
  return actionsFor(task).map(([label, action]) => h("button", {
    type: "button",
    class: action === "delete" ? "small danger" : "small",
    "data-action": action,
    "aria-label": `${label} ${task.task_name}`,
    onclick: async () => {
      if (await runAction(ctx, task, action)) after(action);
    },
  }, label));
}

/**
 * Previous / next buttons around "Page n of m" for a listing of `count` items shown
 * `size` at a time from `offset`; `go(newOffset)` shows another page.
 */
export function pagerButtons({ offset, count, size, go, noun = "page", total = "" }) {
  const pages = Math.max(1, Math.ceil(count / size));
  const page = Math.floor(offset / size) + 1;
  return [
    h("button", { type: "button", disabled: page <= 1, onclick: () => go(offset - size) },
      `Previous ${noun}`),
    h("span", {}, ` Page ${page} of ${pages}${total} `),
    h("button", { type: "button", disabled: page >= pages, onclick: () => go(offset + size) },
      `Next ${noun}`),
  ];
}
