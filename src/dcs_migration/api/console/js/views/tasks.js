// The task list: both kinds of task, their live progress, filters and the actions.

import { fill, h } from "../dom.js";
import {
  IMPORT, isActive, methodWords, ONLINE, statusWords, time, typeWords,
} from "../format.js";
import {
  actionButtons, outcome, pagerButtons, progressOf, REFRESH_MS, sizeBars, statusBadge,
} from "./common.js";

const PAGE = 50;
const STATUSES = [
  "MIGRATING", "FULLMIGRATING", "INCRMIGEATING", "RUNNING", "TERMINATING", "TERMINATED",
  "SUCCESS", "FAILED", "MIGRATION_FAILED",
];

export function render(ctx, main) {
  const state = { offset: 0, count: 0, tasks: [], stats: new Map(), details: new Map() };
  const selected = new Set();
  const rows = new Map();

  const name = h("input", { type: "search", id: "filter-name", placeholder: "Task name" });
  const status = h("select", { id: "filter-status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s }, statusWords(s)[0])));
  const type = h("select", { id: "filter-type" },
    h("option", { value: "" }, "All types"),
    h("option", { value: IMPORT }, typeWords(IMPORT)),
    h("option", { value: ONLINE }, typeWords(ONLINE)));
  const body = h("tbody");
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  const batch = h("div", { class: "batch" });

  main.append(
    h("div", { class: "title-row" },
      h("h1", {}, "Migration tasks"),
      h("div", { class: "actions" },
        h("a", { class: "button primary", href: "#/create/import" }, "Create backup import"),
        h("a", { class: "button", href: "#/create/online" }, "Create online migration"))),
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); } },
      h("label", { for: "filter-name" }, "Name"), name,
      h("label", { for: "filter-status" }, "Status"), status,
      h("label", { for: "filter-type" }, "Type"), type),
    batch,
    h("div", { class: "table-wrap" },
      h("table", { class: "tasks" },
        h("caption", { class: "visually-hidden" }, "Migration tasks of this project"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")),
          ["Name / ID", "Status", "Type", "Source", "Target", "Created", "Progress", "Actions"]
            .map((label) => h("th", { scope: "col" }, label)))),
        body)),
    summary,
    pager,
  );

  let timer = null;
  let stopped = false;
  let nameTimer = null;

  name.addEventListener("input", () => {
    clearTimeout(nameTimer);
    nameTimer = setTimeout(() => { state.offset = 0; refresh(); }, 300);
  });
  for (const filter of [status, type]) {
    filter.addEventListener("change", () => { state.offset = 0; refresh(); });
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const answer = await ctx.api.get("/migration-tasks", {
        offset: state.offset,
        limit: PAGE,
        name: name.value.trim() || undefined,
        status: status.value || undefined,
        migration_type: type.value || undefined,
      });
      state.count = answer.count;
      state.tasks = answer.migration_tasks;
      await Promise.all([loadStats(), loadDetails()]);
      if (!stopped) draw();
    } catch (err) {
      if (!stopped) ctx.notify(`Tasks could not be listed: ${err.message}`, "error");
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  async function loadStats() {
    // Active tasks every time; the others once more after their status changed (the
    // final figures), then never again.
    const wanted = state.tasks.filter((t) => isActive(t.status)
      || (state.stats.get(t.task_id) || {}).status !== t.status);
    await Promise.all(wanted.slice(0, 25).map(async (t) => {
      try {
        const stats = await ctx.api.get(`/migration-task/${t.task_id}/stats`);
        state.stats.set(t.task_id, { status: t.status, stats });
      } catch {
        // deleted meanwhile: the next listing drops it
      }
    }));
  }

  async function loadDetails() {
    // Where an import's data comes from (its files) is in its detail only; it never changes.
    const missing = state.tasks.filter(
      (t) => t.migration_type === IMPORT && !state.details.has(t.task_id));
    await Promise.all(missing.slice(0, 25).map(async (t) => {
      try {
        state.details.set(t.task_id, await ctx.api.get(`/migration-task/${t.task_id}`));
      } catch {
        // as above
      }
    }));
  }

  function draw() {
    const shown = state.tasks;
    const keep = new Set(shown.map((t) => t.task_id));
    for (const id of [...rows.keys()]) {
      if (!keep.has(id)) {
        rows.get(id).row.remove();
        rows.delete(id);
      }
    }
    for (const id of [...selected]) if (!state.tasks.some((t) => t.task_id === id)) selected.delete(id);
    for (const task of shown) {
      const entry = rows.get(task.task_id) || makeRow(task);
      updateRow(entry, task);
      body.append(entry.row); // keeps the listing's order
    }
    if (shown.length === 0) {
      fill(body, h("tr", {}, h("td", { colspan: 9, class: "empty" },
        filtered() ? "No task matches the filters." : "No migration task yet.")));
      rows.clear();
    } else {
      for (const row of body.querySelectorAll("tr:not([data-task-id])")) row.remove();
    }
    summary.textContent = filtered()
      ? `${state.count} task(s) match the filters.` : `${state.count} task(s).`;
    drawPager();
    drawBatch();
  }

  function filtered() {
    return Boolean(name.value.trim() || status.value || type.value);
  }

  function makeRow(task) {
    const box = h("input", {
      type: "checkbox",
      "aria-label": `Select ${task.task_name}`,
      onchange: () => {
        if (box.checked) selected.add(task.task_id);
        else selected.delete(task.task_id);
        drawBatch();
      },
    });
    const cells = {
      name: h("td"), status: h("td"), type: h("td"), source: h("td", { class: "source" }),
      target: h("td"), created: h("td"), progress: h("td", { class: "progress-cell" }),
      actions: h("td", { class: "row-actions" }),
    };
    const row = h("tr", { "data-task-id": task.task_id }, h("td", {}, box), Object.values(cells));
    const entry = { row, box, cells, status: null, name: null };
    rows.set(task.task_id, entry);
    return entry;
  }

  function updateRow(entry, task) {
    const { cells } = entry;
    entry.box.checked = selected.has(task.task_id);
    if (entry.name !== task.task_name) {
      fill(cells.name,
        h("a", { href: `#/tasks/${task.task_id}` }, task.task_name),
        h("div", { class: "muted mono" }, task.task_id));
      fill(cells.type, typeWords(task.migration_type),
        h("div", { class: "muted" }, methodWords(task.migration_method)));
      fill(cells.target, task.target_instance_name || task.target_instance_addrs || "",
        task.target_instance_name ? h("div", { class: "muted mono" }, task.target_instance_addrs) : null);
      fill(cells.created, time(task.created_at));
      entry.name = task.task_name;
    }
    fill(cells.source, sourceOf(task, state.details.get(task.task_id)));
    fill(cells.progress, progressOf(task, (state.stats.get(task.task_id) || {}).stats));
    sizeBars(cells.progress);
    if (entry.status !== task.status) {
      fill(cells.status, statusBadge(task.status),
        task.error_message ? h("div", { class: "error-text" }, task.error_message) : null);
      fill(cells.actions, actionButtons(ctx, task, () => refresh()));
      entry.status = task.status;
    }
  }

  function drawPager() {
    fill(pager, pagerButtons({
      offset: state.offset,
      count: state.count,
      size: PAGE,
      go: (offset) => { state.offset = offset; refresh(); },
    }));
  }

  function drawBatch() {
    const chosen = state.tasks.filter((t) => selected.has(t.task_id));
    const count = chosen.length;
    fill(batch,
      h("span", { class: "muted" }, count ? `${count} selected` : "Select tasks for batch actions"),
      h("button", {
        type: "button", class: "small", disabled: !count, onclick: () => batchCall(chosen, "stop"),
      }, "Stop selected"),
      h("button", {
        type: "button", class: "small", disabled: !count, onclick: () => batchCall(chosen, "restart"),
      }, "Restart selected"),
      h("button", {
        type: "button", class: "small danger", disabled: !count,
        onclick: () => batchCall(chosen, "delete"),
      }, "Delete selected"));
  }

  async function batchCall(chosen, action) {
    const names = chosen.map((t) => t.task_name).join(", ");
    const words = { stop: "Stop", restart: "Restart", delete: "Delete" }[action];
    const ok = await ctx.confirm(`${words} ${chosen.length} task(s)?`, names, words);
    if (!ok) return;
    const ids = chosen.map((t) => t.task_id);
    try {
      if (action === "stop") {
        outcome(ctx, await ctx.api.post("/migration-task/batch-stop", { migration_tasks: ids }),
          "stopping");
      } else if (action === "restart") {
        outcome(ctx, await ctx.api.post("/migration-tasks/batch-restart", { migration_tasks: ids }),
          "restarted");
      } else {
        await ctx.api.delete("/migration-tasks/delete", { task_id_list: ids });
        ctx.notify(`${ids.length} task(s) deleted.`, "success");
      }
      selected.clear();
    } catch (err) {
      ctx.notify(err.message, "error");
    }
    refresh();
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(nameTimer);
  };
}

/** Bucket and files, a backup, or the source's addresses. */
export function sourceOf(task, detail) {
  if (task.migration_type === ONLINE) {
    return [task.source_instance_name || "", h("div", { class: "mono" }, task.data_source || "")];
  }
  const files = detail && detail.backup_files;
  if (files && files.file_source === "backup_record") {
    return ["Backup ", h("span", { class: "mono" }, files.backup_id || "")];
  }
  const names = files && files.files ? files.files.map((f) => f.file_name) : [];
  return [
    h("span", { class: "mono" }, task.data_source || (files && files.bucket_name) || ""),
    names.length ? h("div", { class: "muted mono" },
      names.slice(0, 3).join(", ") + (names.length > 3 ? ` +${names.length - 3}` : "")) : null,
  ];
}
