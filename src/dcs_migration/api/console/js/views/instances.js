// Instances and backups: register a Redis, take a backup, download it, restore it.

import { clearErrors, field, fill, h, showError } from "../dom.js";
import { bytes, time } from "../format.js";
import { REFRESH_MS } from "./common.js";

const LINK_SECONDS = 3600;

export function render(ctx, main) {
  const listBody = h("tbody");
  const panel = h("section", { class: "card", "aria-live": "polite", hidden: true });
  let current = null;
  let timer = null;
  let stopped = false;

  main.append(
    h("div", { class: "title-row" }, h("h1", {}, "Instances and backups")),
    h("div", { class: "table-wrap" },
      h("table", {},
        h("caption", { class: "visually-hidden" }, "Registered instances"),
        h("thead", {}, h("tr", {},
          ["Name", "Address", "Type", "Version", "Status", "Used memory", ""].map((l) => h("th", { scope: "col" }, l)))),
        listBody)),
    panel,
    registerForm(),
  );

  async function loadInstances() {
    try {
      const { instances } = await ctx.api.get("/instances", { limit: 1000 });
      fill(listBody, instances.length ? instances.map((i) => h("tr", { "data-instance-id": i.instance_id },
        h("td", {}, i.name, h("div", { class: "muted mono" }, i.instance_id)),
        h("td", { class: "mono" }, `${i.ip}:${i.port}`),
        h("td", {}, i.cache_mode || ""),
        h("td", {}, i.engine_version || ""),
        h("td", {}, i.status),
        h("td", {}, i.used_memory === null ? "" : bytes(i.used_memory * 1024 * 1024)),
        h("td", {}, h("button", {
          type: "button", class: "small", "aria-label": `Backups of ${i.name}`,
          onclick: () => openInstance(i),
        }, "Backups"))))
        : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No instance registered yet.")));
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  function openInstance(instance) {
    current = instance;
    panel.hidden = false;
    drawPanel();
    panel.querySelector("h2").focus();
  }

  function drawPanel() {
    const remark = h("input", { name: "remark", maxlength: 1024 });
    const format = h("select", { name: "backup_format" },
      h("option", { value: "rdb" }, "RDB"), h("option", { value: "aof" }, "AOF"));
    const backupForm = h("form", { class: "inline-form", novalidate: true },
      h("p", { class: "form-error", role: "alert", hidden: true }),
      field("Remark", remark, { apiField: "remark" }),
      field("Format", format, { apiField: "backup_format" }),
      h("button", { type: "submit", class: "primary" }, "Take a backup"));
    backupForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(backupForm);
      try {
        const answer = await ctx.api.post(`/instances/${current.instance_id}/backups`, {
          remark: remark.value || undefined, backup_format: format.value,
        });
        ctx.notify(`Backup ${answer.backup_id} started.`, "success");
        remark.value = "";
        loadBackups();
      } catch (err) {
        showError(backupForm, err);
      }
    });
    fill(panel,
      h("h2", { tabindex: -1 }, `Backups of ${current.name}`),
      backupForm,
      h("div", { class: "table-wrap" }, h("table", { class: "backups" },
        h("caption", { class: "visually-hidden" }, `Backups of ${current.name}`),
        h("thead", {}, h("tr", {},
          ["Backup", "Format", "Status", "Size", "Created", "Remark", "Actions"].map((l) => h("th", { scope: "col" }, l)))),
        h("tbody", { id: "backup-rows" }))),
      h("h3", {}, "Restores"),
      h("div", { class: "table-wrap" }, h("table", { class: "restores" },
        h("thead", {}, h("tr", {},
          ["Restore", "Backup", "Status", "Progress", "Created"].map((l) => h("th", { scope: "col" }, l)))),
        h("tbody", { id: "restore-rows" }))),
      h("div", { id: "links", "aria-live": "polite" }));
    loadBackups();
  }

  async function loadBackups() {
    clearTimeout(timer);
    if (!current || stopped) return;
    const instanceId = current.instance_id;
    try {
      const [backups, restores] = await Promise.all([
        ctx.api.get(`/instances/${instanceId}/backups`, { limit: 100 }),
        ctx.api.get(`/instances/${instanceId}/restores`, { limit: 20 }),
      ]);
      if (stopped || !current || current.instance_id !== instanceId) return;
      const backupRows = panel.querySelector("#backup-rows");
      fill(backupRows, backups.backup_record_response.length
        ? backups.backup_record_response.map((b) => h("tr", { "data-backup-id": b.backup_id },
          h("td", { class: "mono" }, b.backup_name || b.backup_id),
          h("td", {}, b.backup_format || ""),
          h("td", {}, b.status, b.progress && b.status === "backuping" ? ` ${b.progress}%` : "",
            b.error_code ? h("div", { class: "error-text" }, b.error_code) : null),
          h("td", {}, b.size === null ? "" : bytes(b.size)),
          h("td", {}, time(b.created_at)),
          h("td", {}, b.remark || ""),
          h("td", { class: "row-actions" }, backupActions(b))))
        : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No backup yet.")));
      fill(panel.querySelector("#restore-rows"), restores.restore_record_response.length
        ? restores.restore_record_response.map((r) => h("tr", {},
          h("td", { class: "mono" }, r.restore_name || r.restore_id),
          h("td", { class: "mono" }, r.backup_name || r.backup_id || ""),
          h("td", {}, r.status, r.error_code ? h("div", { class: "error-text" }, r.error_code) : null),
          h("td", {}, r.progress ? `${r.progress}%` : ""),
          h("td", {}, time(r.created_at))))
        : h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No restore yet.")));
      const busy = backups.backup_record_response.some((b) => b.status === "waiting" || b.status === "backuping")
        || restores.restore_record_response.some((r) => r.status === "waiting" || r.status === "restoring");
      if (busy) timer = setTimeout(loadBackups, REFRESH_MS);
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  function backupActions(b) {
    if (b.status !== "succeed") return [];
    return [
      h("button", {
        type: "button", class: "small", "aria-label": `Download ${b.backup_name || b.backup_id}`,
        onclick: () => download(b),
      }, "Download"),
      h("button", {
        type: "button", class: "small", "aria-label": `Restore ${b.backup_name || b.backup_id}`,
        onclick: () => restore(b),
      }, "Restore"),
      h("button", {
        type: "button", class: "small danger", "aria-label": `Delete ${b.backup_name || b.backup_id}`,
        onclick: () => remove(b),
      }, "Delete"),
    ];
  }

  async function download(b) {
    try {
      const answer = await ctx.api.post(`/instances/${current.instance_id}/backups/${b.backup_id}/links`, {
        expiration: LINK_SECONDS,
      });
      fill(panel.querySelector("#links"),
        h("h3", {}, `Download ${b.backup_name || b.backup_id}`),
        h("p", { class: "muted" }, `Each link works for ${LINK_SECONDS / 60} minutes, for whoever holds it.`),
        h("ul", {}, answer.links.map((l) => h("li", {},
          h("a", { href: l.link, download: l.file_name, rel: "noreferrer" }, l.file_name)))));
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  async function restore(b) {
    const ok = await ctx.confirm("Restore this backup?",
      `${current.name} is flushed, then loaded whole from ${b.backup_name || b.backup_id}. `
        + "Its present data is lost.", "Restore");
    if (!ok) return;
    try {
      const answer = await ctx.api.post(`/instances/${current.instance_id}/restores`, {
        backup_id: b.backup_id,
      });
      ctx.notify(`Restore ${answer.restore_id} started.`, "success");
      loadBackups();
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  async function remove(b) {
    const ok = await ctx.confirm("Delete this backup?", `${b.backup_name || b.backup_id}: its files are deleted.`, "Delete");
    if (!ok) return;
    try {
      await ctx.api.delete(`/instances/${current.instance_id}/backups/${b.backup_id}`);
      ctx.notify("Backup deleted.", "success");
      loadBackups();
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  function registerForm() {
    const name = h("input", { name: "name", required: true, maxlength: 255 });
    const addrs = h("input", { name: "addrs", required: true, placeholder: "10.0.0.5:6379" });
    const password = h("input", { type: "password", name: "password", autocomplete: "new-password" });
    const type = h("select", { name: "instance_type" },
      h("option", { value: "single" }, "Single or master/replica"),
      h("option", { value: "cluster" }, "Redis Cluster"));
    const form = h("form", { class: "card", "aria-labelledby": "register-title", novalidate: true },
      h("h2", { id: "register-title" }, "Register an instance"),
      h("p", { class: "muted" }, "An existing Redis this project may import into, back up and restore. It must answer as Redis, at an address the service allows."),
      h("p", { class: "form-error", role: "alert", hidden: true }),
      field("Name", name, { apiField: "name" }),
      field("Addresses (host:port; a cluster: several, comma-separated)", addrs, { apiField: "addrs ip port" }),
      field("Password", password, { apiField: "password" }),
      field("Type", type, { apiField: "instance_type" }),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Register")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const body = {
        name: name.value.trim(),
        addrs: addrs.value.split(",").map((a) => a.trim()).filter(Boolean),
        instance_type: type.value,
      };
      if (password.value) body.password = password.value;
      try {
        const answer = await ctx.api.post("/instances", body);
        ctx.notify(`Instance ${body.name} registered (${answer.instance_id}).`, "success");
        form.reset();
        loadInstances();
      } catch (err) {
        showError(form, err);
      }
    });
    return form;
  }

  loadInstances();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
