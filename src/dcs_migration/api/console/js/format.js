// How values read to people: the managed service's words for statuses, sizes, times.

const STATUS = {
  MIGRATING: ["Migrating", "running"],
  RUNNING: ["Not configured", "idle"],
  FULLMIGRATING: ["Full migration", "running"],
  INCRMIGEATING: ["Incremental migration", "running"],
  TERMINATING: ["Stopping", "stopping"],
  TERMINATED: ["Stopped", "stopped"],
  SUCCESS: ["Successful", "success"],
  FAILED: ["Failed", "failed"],
  MIGRATION_FAILED: ["Migration failed", "failed"],
};

/** [words, tone] of a status; the tone picks its colour. */
export function statusWords(status) {
  return STATUS[status] || [status, "idle"];
}

/** Whether a task in this status is doing something (and so has live progress). */
export function isActive(status) {
  return ["MIGRATING", "FULLMIGRATING", "INCRMIGEATING", "TERMINATING"].includes(status);
}

export const IMPORT = "backupfile_import";
export const ONLINE = "online_migration";

export function typeWords(type) {
  return type === ONLINE ? "Online migration" : type === IMPORT ? "Backup import" : type;
}

export function methodWords(method) {
  return method === "incremental_migration"
    ? "Full + incremental"
    : method === "full_amount_migration"
      ? "Full"
      : method || "";
}

export function bytes(count) {
  const n = Number(count);
  if (!Number.isFinite(n)) return String(count ?? "");
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function number(count) {
  const n = Number(count);
  return Number.isFinite(n) ? n.toLocaleString("en-US") : String(count ?? "");
}

/** An ISO time of the API as local date and time. */
export function time(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function duration(ms) {
  const n = Number(ms);
  if (!Number.isFinite(n)) return "";
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`;
}
