// Create a backup import: a registered target, and files of a bucket or a backup record.

import { clearErrors, field, fill, h, showError } from "../dom.js";
import { bytes, time } from "../format.js";

const OBJECT_PAGE = 100;

export function render(ctx, main) {
  const name = h("input", { name: "task_name", required: true, maxlength: 255 });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 1024 });
  const target = h("select", { name: "target_instance.id", required: true });
  const password = h("input", { type: "password", name: "target_instance.password", autocomplete: "new-password" });
  const db = h("input", { type: "number", name: "target_instance.db", min: 0, inputmode: "numeric" });

  const fromBucket = h("input", { type: "radio", name: "file_source", value: "self_build_obs", checked: true, id: "source-bucket" });
  const fromBackup = h("input", { type: "radio", name: "file_source", value: "backup_record", id: "source-backup" });

  const bucket = h("input", { name: "backup_files.bucket_name", list: "bucket-names", autocomplete: "off" });
  const bucketNames = h("datalist", { id: "bucket-names" });
  const prefix = h("input", { name: "prefix", type: "search", placeholder: "Only keys starting with…" });
  const objectBody = h("tbody");
  const more = h("button", { type: "button", class: "small", hidden: true }, "More files");
  const extraKeys = h("textarea", { name: "extra_keys", rows: 2, placeholder: "folder/appendonlydir/" });

  const backupInstance = h("select", { name: "backup_instance" });
  const backup = h("select", { name: "backup_files.backup_id" });

  const submit = h("button", { type: "submit", class: "primary" }, "Create");
  const chosen = new Map(); // object key -> {file_name, size, update_at}
  let nextMarker = "";

  const bucketPart = h("fieldset", { class: "source-part" },
    h("legend", {}, "Files in a bucket"),
    field("Bucket", bucket, { apiField: "backup_files.bucket_name backup_files" }),
    bucketNames,
    field("Filter the files", prefix),
    h("div", { class: "field", "data-field": "backup_files.files" },
      h("p", { class: "label", id: "files-label" }, "Files to import"),
      h("div", { class: "table-wrap" },
        h("table", { class: "objects", "aria-labelledby": "files-label" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Import")),
            ["Object key", "Size", "Last modified"].map((l) => h("th", { scope: "col" }, l)))),
          objectBody)),
      more,
      h("p", { class: "field-error", role: "alert", hidden: true })),
    field("Other object keys or folder prefixes (one per line)", extraKeys, {
      hint: "A multi-part AOF folder, or a file not listed above.",
    }),
  );
  const backupPart = h("fieldset", { class: "source-part", hidden: true },
    h("legend", {}, "A backup made by this service"),
    field("Instance backed up", backupInstance),
    field("Backup", backup, { apiField: "backup_files.backup_id" }));

  const form = h("form", { class: "card wide", "aria-labelledby": "import-title", novalidate: true },
    h("h1", { id: "import-title" }, "Create a backup import"),
    h("p", { class: "muted" }, "Imports RDB and AOF files (also zipped, gzipped or in a tar) into a registered Redis."),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    field("Task name", name, { apiField: "task_name" }),
    field("Description", description, { apiField: "description" }),
    h("fieldset", {},
      h("legend", {}, "Source"),
      h("div", { class: "choices" },
        h("label", { for: "source-bucket" }, fromBucket, " Files in a bucket"),
        h("label", { for: "source-backup" }, fromBackup, " A backup record"))),
    bucketPart,
    backupPart,
    h("fieldset", {},
      h("legend", {}, "Target"),
      field("Target instance", target, { apiField: "target_instance.id target_instance" }),
      field("Password (only if not the registered one)", password, { apiField: "target_instance.password" }),
      field("Database (all keys into this db; empty: each key into its own)", db, { apiField: "target_instance.db" })),
    h("div", { class: "actions" }, h("a", { href: "#/tasks", class: "button" }, "Cancel"), submit),
  );
  main.append(form);

  for (const radio of [fromBucket, fromBackup]) {
    radio.addEventListener("change", () => {
      bucketPart.hidden = !fromBucket.checked;
      backupPart.hidden = !fromBackup.checked;
    });
  }
  bucket.addEventListener("change", () => listObjects(true));
  let prefixTimer = null;
  prefix.addEventListener("input", () => {
    clearTimeout(prefixTimer);
    prefixTimer = setTimeout(() => listObjects(true), 300);
  });
  more.addEventListener("click", () => listObjects(false));
  backupInstance.addEventListener("change", listBackups);

  async function loadChoices() {
    try {
      const [{ instances }, buckets] = await Promise.all([
        ctx.api.get("/instances", { limit: 1000 }),
        ctx.api.get("/buckets"),
      ]);
      const options = instances.map((i) => h("option", { value: i.instance_id },
        `${i.name} (${i.ip}:${i.port})`));
      fill(target, h("option", { value: "" }, "Choose an instance…"), options);
      fill(backupInstance, h("option", { value: "" }, "Choose an instance…"),
        instances.map((i) => h("option", { value: i.instance_id }, i.name)));
      fill(bucketNames, buckets.buckets.map((b) => h("option", { value: b.bucket_name })));
      if (buckets.buckets.length === 1 && !bucket.value) {
        bucket.value = buckets.buckets[0].bucket_name;
        listObjects(true);
      }
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  async function listObjects(fromStart) {
    clearErrors(form);
    if (fromStart) {
      nextMarker = "";
      fill(objectBody);
    }
    if (!bucket.value.trim()) return;
    try {
      const answer = await ctx.api.get(`/buckets/${encodeURIComponent(bucket.value.trim())}/objects`, {
        prefix: prefix.value || undefined, marker: nextMarker || undefined, limit: OBJECT_PAGE,
      });
      if (fromStart && answer.objects.length === 0) {
        fill(objectBody, h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No file here.")));
      }
      for (const object of answer.objects) objectBody.append(objectRow(object));
      nextMarker = answer.next_marker || "";
      more.hidden = !nextMarker;
    } catch (err) {
      showError(form, new Error(`backup_files.bucket_name: ${err.message}`));
    }
  }

  function objectRow(object) {
    const box = h("input", {
      type: "checkbox",
      "aria-label": `Import ${object.file_name}`,
      checked: chosen.has(object.file_name),
      onchange: () => {
        if (box.checked) chosen.set(object.file_name, object);
        else chosen.delete(object.file_name);
      },
    });
    return h("tr", {},
      h("td", {}, box),
      h("td", { class: "mono" }, object.file_name),
      h("td", { class: "nowrap" }, bytes(object.size)),
      h("td", { class: "nowrap" }, object.update_at || ""));
  }

  async function listBackups() {
    fill(backup);
    if (!backupInstance.value) return;
    try {
      const answer = await ctx.api.get(`/instances/${backupInstance.value}/backups`, { limit: 1000 });
      const usable = answer.backup_record_response.filter((b) => b.status === "succeed");
      fill(backup, usable.length
        ? usable.map((b) => h("option", { value: b.backup_id },
          `${b.backup_name || b.backup_id} · ${b.backup_format || ""} · ${bytes(b.size || 0)} · ${time(b.created_at)}`))
        : h("option", { value: "" }, "No finished backup of this instance"));
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const files = [...chosen.values()].map((o) => ({ file_name: o.file_name, size: o.size, update_at: o.update_at }));
    for (const key of extraKeys.value.split("\n").map((k) => k.trim()).filter(Boolean)) {
      if (!chosen.has(key)) files.push({ file_name: key });
    }
    const backupFiles = fromBucket.checked
      ? { file_source: "self_build_obs", bucket_name: bucket.value.trim(), files }
      : { file_source: "backup_record", backup_id: backup.value };
    const targetInstance = { id: target.value };
    if (password.value) targetInstance.password = password.value;
    if (db.value !== "") targetInstance.db = Number(db.value);
    const body = {
      task_name: name.value.trim(),
      migration_type: "backupfile_import",
      migration_method: "full_amount_migration",
      backup_files: backupFiles,
      target_instance: targetInstance,
    };
    if (description.value.trim()) body.description = description.value.trim();
    submit.disabled = true;
    try {
      const answer = await ctx.api.post("/migration-task", body);
      ctx.notify(`Import ${answer.name} created.`, "success");
      ctx.navigate(`#/tasks/${answer.id}`);
    } catch (err) {
      showError(form, err);
    } finally {
      submit.disabled = false;
    }
  });

  loadChoices();
  name.focus();
  return () => clearTimeout(prefixTimer);
}
