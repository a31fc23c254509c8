// The console's shell: sign-in, the sections, the confirmation dialog and notices.
// Each section is a view module: `render(ctx, main, params)` fills `main` and may return
// a function that stops what it started (a refresh timer) when the user leaves.

import { Api, ApiError, forgetCredentials, saveCredentials, savedCredentials } from "./api.js";
import { clearErrors, field, fill, h, showError } from "./dom.js";
import * as importForm from "./views/import_form.js";
import * as instances from "./views/instances.js";
import * as onlineForm from "./views/online_form.js";
import * as taskDetail from "./views/task.js";
import * as taskList from "./views/tasks.js";

const ROUTES = [
  [/^#\/tasks$/, "tasks", taskList],
  [/^#\/tasks\/([0-9a-f-]+)$/, "tasks", taskDetail],
  [/^#\/create\/import$/, "create-import", importForm],
  [/^#\/create\/online$/, "create-online", onlineForm],
  [/^#\/configure\/([0-9a-f-]+)$/, "create-online", onlineForm],
  [/^#\/instances$/, "instances", instances],
];

const main = document.getElementById("main");
let leaveView = null;
let noticeTimer = null;

const ctx = {
  api: null,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  notify(message, tone = "info") {
    const notice = document.getElementById("notice");
    notice.textContent = message;
    notice.dataset.tone = tone;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.hidden = true; }, tone === "error" ? 12000 : 6000);
  },
  /** Ask before doing something that cannot be undone; resolves true on confirm. */
  confirm(title, text, confirmLabel = "Confirm") {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = confirmLabel;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  },
};

function route() {
  if (leaveView) leaveView();
  leaveView = null;
  if (!ctx.api) {
    showSignIn();
    return;
  }
  const hash = location.hash || "#/tasks";
  for (const [pattern, section, view] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("#sections a")) {
      if (link.dataset.section === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    fill(main);
    leaveView = view.render(ctx, main, match.slice(1)) || null;
    return;
  }
  location.replace("#/tasks");
}

function signedIn(credentials) {
  ctx.api = new Api(credentials, signedOut);
  document.getElementById("sections").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-project").textContent = `Project ${credentials.projectId}`;
}

function showSignIn() {
  document.getElementById("sections").hidden = true;
  document.getElementById("who").hidden = true;
  const projectId = h("input", { name: "project_id", required: true, autocomplete: "username" });
  const ak = h("input", { name: "ak", required: true, autocomplete: "off", spellcheck: "false" });
  const sk = h("input", {
    name: "sk", type: "password", required: true, autocomplete: "current-password",
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {},
      "Use an access key of your project (",
      h("code", {}, "dcs-migration keys create"),
      "). The console signs every call with it, in this browser; the secret key is kept in",
      " this tab only and forgotten when it closes."),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    field("Project ID", projectId, { apiField: "project_id" }),
    field("Access key (AK)", ak),
    field("Secret key (SK)", sk),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    const credentials = {
      projectId: projectId.value.trim(), ak: ak.value.trim(), sk: sk.value,
    };
    try {
      // Any signed call checks the key: the service says why it refuses one.
      await new Api(credentials).get("/migration-tasks", { limit: 1, offset: 0 });
      saveCredentials(credentials);
      signedIn(credentials);
      route();
    } catch (err) {
      showError(form, err instanceof ApiError ? refusalWords(err) : err);
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, form);
  projectId.focus();
}

function refusalWords(err) {
  if (err.status === 401) return new Error(`Refused: ${err.message}`);
  if (err.status === 403) return new Error(`Refused for this project: ${err.message}`);
  return err;
}

document.getElementById("sign-out").addEventListener("click", () => {
  forgetCredentials();
  ctx.api = null;
  location.hash = "";
  route();
});

/** A call refused for its signature after sign-in (the key revoked, the clock moved):
 * back to the sign-in form, saying why. */
function signedOut(err) {
  if (!ctx.api) return;
  forgetCredentials();
  ctx.api = null;
  route();
  ctx.notify(`Signed out: ${err.message}`, "error");
}

window.addEventListener("hashchange", route);
const saved = savedCredentials();
if (saved) signedIn(saved);
route();
