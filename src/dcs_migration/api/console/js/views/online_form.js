// Create an online migration: the task (POST migration/instance), then its configuration
// (POST migration/{id}/task), as the managed service's console does in two steps. A
// refused configuration leaves the created task waiting: the next submit configures it.

import { clearErrors, field, fill, h, showError } from "../dom.js";

/** `configure` (a task id): the second step alone, for a task created earlier. */
export function render(ctx, main, [configure] = []) {
  const name = h("input", { name: "name", required: true, minlength: 4, maxlength: 64, pattern: "[A-Za-z][A-Za-z0-9_-]{3,63}" });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 1024 });
  const vpc = h("input", { name: "vpc_id", value: "default" });
  const subnet = h("input", { name: "subnet_id", value: "default" });
  const group = h("input", { name: "security_group_id", value: "default" });

  const method = h("select", { name: "migration_method" },
    h("option", { value: "incremental_migration" }, "Full + incremental (keeps syncing until you sync-stop)"),
    h("option", { value: "full_amount_migration" }, "Full only (one copy, then done)"));
  const resume = h("select", { name: "resume_mode" },
    h("option", { value: "auto" }, "Automatic (continue after a restart of the service)"),
    h("option", { value: "manual" }, "Manual (restart it yourself)"));
  const bandwidth = h("input", { type: "number", name: "bandwidth_limit_mb", min: 1, max: 10240, inputmode: "numeric" });

  const source = side("source_instance", "Source");
  const target = side("target_instance", "Target");
  const submit = h("button", { type: "submit", class: "primary" }, "Create and start");
  const created = h("p", { class: "muted", "aria-live": "polite" });
  let taskId = configure || null;

  const form = h("form", { class: "card wide", "aria-labelledby": "online-title", novalidate: true },
    h("h1", { id: "online-title" }, "Create an online migration"),
    h("p", { class: "muted" }, "Copies a live Redis into another, then applies its writes as they happen, until you sync-stop it."),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    field("Task name", name, { apiField: "name", hint: "4 to 64 letters, digits, - or _, starting with a letter." }),
    field("Description", description, { apiField: "description" }),
    h("details", {},
      h("summary", {}, "Network fields (kept for clients of the managed API; not used here)"),
      field("VPC ID", vpc, { apiField: "vpc_id" }),
      field("Subnet ID", subnet, { apiField: "subnet_id" }),
      field("Security group ID", group, { apiField: "security_group_id" })),
    field("Migration method", method, { apiField: "migration_method" }),
    field("Resume mode", resume, { apiField: "resume_mode" }),
    field("Bandwidth limit, MB/s (empty: none)", bandwidth, { apiField: "bandwidth_limit_mb" }),
    source.element,
    target.element,
    created,
    h("div", { class: "actions" }, h("a", { href: "#/tasks", class: "button" }, "Cancel"), submit),
  );
  main.append(form);
  if (taskId) {
    for (const control of [name, description, vpc, subnet, group]) control.disabled = true;
    submit.textContent = "Configure and start";
    ctx.api.get(`/migration-task/${taskId}`).then((task) => {
      name.value = task.task_name;
      description.value = task.description || "";
      created.textContent = `Task ${taskId} waits for its configuration.`;
    }, (err) => ctx.notify(err.message, "error"));
  }

  function side(prefix, title) {
    const byInstance = h("input", { type: "radio", name: `${prefix}-by`, value: "id", checked: true, id: `${prefix}-by-id` });
    const byAddrs = h("input", { type: "radio", name: `${prefix}-by`, value: "addrs", id: `${prefix}-by-addrs` });
    const instance = h("select", { name: `${prefix}.id` });
    const addrs = h("input", { name: `${prefix}.addrs`, placeholder: "10.0.0.5:6379 (a cluster: every master, comma-separated)" });
    const password = h("input", { type: "password", name: `${prefix}.password`, autocomplete: "new-password" });
    const instancePart = field(`${title} instance`, instance, { apiField: `${prefix}.id ${prefix}` });
    const addrsPart = field(`${title} addresses`, addrs, { apiField: `${prefix}.addrs ${prefix}` });
    addrsPart.hidden = true;
    const toggle = () => {
      instancePart.hidden = !byInstance.checked;
      addrsPart.hidden = !byAddrs.checked;
    };
    byInstance.addEventListener("change", toggle);
    byAddrs.addEventListener("change", toggle);
    const element = h("fieldset", {},
      h("legend", {}, title),
      h("div", { class: "choices" },
        h("label", { for: `${prefix}-by-id` }, byInstance, " A registered instance"),
        h("label", { for: `${prefix}-by-addrs` }, byAddrs, " Addresses")),
      instancePart,
      addrsPart,
      field(`${title} password (if not the registered one)`, password, { apiField: `${prefix}.password` }));
    return {
      element,
      instance,
      body() {
        const out = byInstance.checked ? { id: instance.value } : { addrs: addrs.value.trim() };
        if (password.value) out.password = password.value;
        return out;
      },
    };
  }

  async function loadInstances() {
    try {
      const { instances } = await ctx.api.get("/instances", { limit: 1000 });
      for (const select of [source.instance, target.instance]) {
        fill(select, h("option", { value: "" }, "Choose an instance…"),
          instances.map((i) => h("option", { value: i.instance_id }, `${i.name} (${i.ip}:${i.port})`)));
      }
    } catch (err) {
      ctx.notify(err.message, "error");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      if (!taskId) {
        const body = {
          name: name.value.trim(),
          vpc_id: vpc.value.trim(),
          subnet_id: subnet.value.trim(),
          security_group_id: group.value.trim(),
        };
        if (description.value.trim()) body.description = description.value.trim();
        const answer = await ctx.api.post("/migration/instance", body);
        taskId = answer.instance_id;
        for (const control of [name, description, vpc, subnet, group]) control.disabled = true;
        created.textContent = `Task ${taskId} created; configuring it…`;
      }
      const config = {
        migration_method: method.value,
        resume_mode: resume.value,
        source_instance: source.body(),
        target_instance: target.body(),
      };
      if (bandwidth.value !== "") config.bandwidth_limit_mb = Number(bandwidth.value);
      await ctx.api.post(`/migration/${taskId}/task`, config);
      ctx.notify(`Online migration ${name.value.trim()} started.`, "success");
      ctx.navigate(`#/tasks/${taskId}`);
    } catch (err) {
      if (taskId) created.textContent = `Task ${taskId} is created and waits for a configuration the service accepts.`;
      showError(form, err);
    } finally {
      submit.disabled = false;
    }
  });

  loadInstances();
  (taskId ? method : name).focus();
}
