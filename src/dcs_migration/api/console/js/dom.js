// Building the page. Text from the service (task names, messages, file names) is only ever
// set as text, never parsed as HTML.

/**
 * An element: `h("button", {class: "primary", onclick: go}, "Create")`. Attributes named
 * `on...` are listeners; `true`/`false` set or omit a boolean attribute; children are
 * nodes, strings, or (nested) arrays of them, null and false skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace what `element` holds. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let uniqueCounter = 0;

/** An id no other element of the page has. */
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/**
 * A labelled form field: the label, the control, a hint, and a place for the service's
 * error about it (`data-field` names the API field, as error messages name it).
 */
export function field(label, control, { hint, apiField } = {}) {
  const id = control.id || uniqueId("field");
  control.id = id;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  return h(
    "div",
    { class: "field", "data-field": apiField || null },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, role: "alert", hidden: true }),
  );
}

/** Show the service's refusal beside the field its message names, or above the form. */
export function showError(form, error) {
  clearErrors(form);
  const message = error.message || String(error);
  const target = fieldNamed(form, message);
  const slot = target
    ? target.querySelector(".field-error")
    : form.querySelector(".form-error");
  slot.textContent = message;
  slot.hidden = false;
  if (target) {
    const control = target.querySelector("input, select, textarea");
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
  }
  return target;
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error, .form-error")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
}

/** The field whose API name the message names first, the most specific name winning
 * ("backup_files.bucket_name" over "backup_files"). */
function fieldNamed(form, message) {
  const text = message.replace(/^Invalid parameter:\s*/, "");
  let best = null;
  let bestLength = 0;
  for (const candidate of form.querySelectorAll("[data-field]")) {
    if (candidate.hidden || candidate.closest("[hidden]")) continue;
    for (const name of candidate.dataset.field.split(" ")) {
      if ((text.startsWith(name) || text.includes(` ${name}`)) && name.length > bestLength) {
        best = candidate;
        bestLength = name.length;
      }
    }
  }
  return best;
}
