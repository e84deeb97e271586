// Activity (admins): the garbage collector's state and the storage held per repository in
// this region, the residency compliance report (every region), webhook deliveries with their attempts, per webhook, and the audit log with
// filters (actor, action prefix, how many), newest first.
import { get, mgmt, qs } from "./api.js";
import { bytes, errorBox, h, table } from "./ui.js";

const when = (ms) => (ms > 0 ? new Date(ms).toLocaleString() : "never");

// GET gc (docs/operations.md): the review queue, what is due, totals, the last pass.
async function gc(box, ctx) {
  const g = await get(mgmt("gc"), { signal: ctx.signal });
  box.append(h("dl", { class: "kv card", id: "gc-status" },
    h("dt", {}, "Collector"), h("dd", { "data-gc": "enabled" },
      g.enabled ? `on · grace ${g.grace_s} s · a pass every ${g.interval_s} s` : "off (--gc-grace 0)"),
    h("dt", {}, "Queue"), h("dd", { "data-gc": "queue" },
      `${g.queue_length} blobs waiting, ${g.due} past their grace`),
    h("dt", {}, "Reclaimed"), h("dd", { "data-gc": "reclaimed" },
      `${g.blobs_reclaimed_total} blobs, ${bytes(g.bytes_reclaimed_total)}`),
    h("dt", {}, "Errors"), h("dd", { "data-gc": "errors" }, String(g.errors_total)),
    h("dt", {}, "Last run"), h("dd", { "data-gc": "last-run" }, when(g.last_run_ms))));
}

// GET storage: bytes linked per repository here (unique to it, shared with others).
async function storage(box, ctx) {
  const s = await get(mgmt("storage"), { signal: ctx.signal });
  const repos = s.repositories || [];
  box.append(h("p", { id: "storage-total" }, `${bytes(s.total_bytes)} held in ${s.region} ` +
                                             "(each blob once)."),
    repos.length === 0 ? h("p", { class: "muted" }, "No repository holds blobs here.") :
      table([{ title: "Repository" }, { title: "Unique", num: true },
             { title: "Shared", num: true }, { title: "Blobs", num: true }],
        repos.map((r) => h("tr", { "data-repository": r.repository },
          h("td", { class: "mono" }, r.repository),
          h("td", { class: "num" }, bytes(r.unique_bytes)),
          h("td", { class: "num" }, bytes(r.shared_bytes)),
          h("td", { class: "num" }, r.blobs))), { id: "storage-table" }));
}

// GET compliance (docs/governance.md, "Residency"): each repository's holdings against the
// regions its residency policies allow, with every violation; a region that did not answer
// makes its repositories Unknown, never Compliant.
async function compliance(box, ctx) {
  const c = await get(mgmt("compliance"), { signal: ctx.signal });
  const silent = (c.regions || []).filter((r) => !r.answered).map((r) => r.name);
  const repos = c.repositories || [];
  box.append(h("p", { id: "compliance-summary" },
    `${repos.length} repositories, ${c.violations} violations, ` +
    `${(c.policies || []).length} residency policies` +
    (silent.length ? `; no answer from ${silent.join(", ")}` : "") + "."),
    repos.length === 0 ? h("p", { class: "muted" }, "No repository to report on.") :
      table([{ title: "Repository" }, { title: "State" }, { title: "Held in" },
             { title: "Allowed in" }, { title: "Violations", num: true }],
        repos.map((r) => h("tr", { "data-repository": r.repository },
          h("td", { class: "mono" }, r.repository), h("td", {}, r.state),
          h("td", {}, (r.heldIn || []).join(", ")),
          h("td", {}, (r.allowedRegions || []).join(", ")),
          h("td", { class: "num" }, (r.violations || []).length))), { id: "compliance-table" }));
}

const deliveryState = { pending: "Pending", delivered: "Completed", failed: "Failed" };

async function webhooks(box, ctx) {
  const hooks = await get(mgmt("webhooks"), { signal: ctx.signal });
  if (hooks.length === 0) {
    box.append(h("p", { class: "muted" }, "No webhooks."));
    return;
  }
  for (const w of hooks) {
    const section = h("section", { "aria-labelledby": "wh-" + w.name },
      h("h3", { id: "wh-" + w.name }, `${w.name} `,
        h("span", { class: "muted" }, `${w.location} · ${(w.actions || []).join(", ")} · ` +
          `${w.scope} · ${w.enabled ? "enabled" : "disabled"}`)));
    box.append(section);
    try {
      const events = await get(mgmt(`webhooks/${encodeURIComponent(w.name)}/events?n=20`),
                               { signal: ctx.signal });
      section.append(events.length === 0 ? h("p", { class: "muted" }, "No deliveries in this region.") :
        table([{ title: "Delivery" }, { title: "Action" }, { title: "State" },
               { title: "Attempts", num: true }, { title: "Last answer" },
               { title: "Latency", num: true }, { title: "Updated" }, { title: "Next attempt" }],
          events.map((d) => h("tr", { "data-delivery": d.id },
            h("td", { class: "mono" }, d.id.slice(0, 12)), h("td", {}, d.action),
            h("td", {}, h("span", { class: "state s-" + (deliveryState[d.state] || "Pending") },
                          d.state)),
            h("td", { class: "num" }, d.attempts),
            h("td", {}, d.statusCode === null ? (d.response || "unreachable")
                                              : `${d.statusCode} ${d.response || ""}`),
            h("td", { class: "num" }, d.latencyMs === null ? "–" : `${d.latencyMs} ms`),
            h("td", {}, d.updatedAt || "–"), h("td", {}, d.nextAttemptAt || "–")))));
    } catch (e) {
      section.append(errorBox(e));
    }
  }
}

function audit(box, ctx) {
  const form = h("form", { class: "inline", id: "audit-filter", "aria-label": "Audit filters" },
    h("label", {}, "Actor", h("input", { name: "actor", id: "audit-actor" })),
    h("label", {}, "Action prefix", h("input", { name: "action", id: "audit-action",
                                                  placeholder: "e.g. manifest, role, login" })),
    h("label", {}, "Entries", h("input", { name: "limit", type: "number", min: 1, max: 1000,
                                           value: 100 })),
    h("button", { type: "submit", class: "primary" }, "Filter"));
  const out = h("div", { id: "audit-list", "aria-live": "polite" });
  box.append(form, out);
  const load = async () => {
    const q = qs({ actor: form.actor.value, action: form.action.value, limit: form.limit.value });
    try {
      const list = await get(mgmt("audit" + (q ? "?" + q : "")), { signal: ctx.signal });
      out.replaceChildren(list.length === 0 ? h("p", {}, "No entries match.") :
        table([{ title: "Time" }, { title: "Actor" }, { title: "Action" }, { title: "Target" },
               { title: "Status", num: true }, { title: "Count", num: true },
               { title: "From" }, { title: "Detail" }],
          list.map((a) => h("tr", {},
            h("td", {}, a.time), h("td", {}, a.actor), h("td", {}, a.action),
            h("td", { class: "mono" }, a.target || ""), h("td", { class: "num" }, a.status),
            h("td", { class: "num" }, a.count), h("td", {}, a.remote || ""),
            h("td", {}, a.detail || "")))));
    } catch (e) {
      if (e.name !== "AbortError") out.replaceChildren(errorBox(e));
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  return load();
}

export async function render(main, ctx) {
  main.append(h("h1", {}, "Activity"));
  if (!ctx.session.isAdmin) {
    main.append(h("p", { class: "card" }, "Activity (garbage collection, storage, webhook " +
                                          "deliveries, the audit log) needs the admin role."));
    return;
  }
  const collector = h("div", { id: "gc" });
  const held = h("div", { id: "storage" });
  const hooks = h("div", { id: "webhooks" });
  const log = h("div", { id: "audit" });
  const report = h("div", { id: "compliance" });
  main.append(h("h2", {}, "Garbage collection (this region)"), collector,
              h("h2", {}, "Storage per repository (this region)"), held,
              h("h2", {}, "Residency compliance (every region)"), report,
              h("h2", {}, "Webhook deliveries (this region)"), hooks,
              h("h2", {}, "Audit log"), log);
  const shown = (box) => (e) => { if (e.name !== "AbortError") box.append(errorBox(e)); };
  await Promise.all([gc(collector, ctx).catch(shown(collector)),
                     storage(held, ctx).catch(shown(held)),
                     compliance(report, ctx).catch(shown(report)),
                     webhooks(hooks, ctx).catch(shown(hooks)),
                     audit(log, ctx)]);
}
