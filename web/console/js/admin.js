// Admin actions (admins only; others are not offered the page): add or remove a region,
// assign or revoke a role, enable or disable a webhook. Every change asks for confirmation first; the server checks the
// admin role again on each request.
import { get, mgmt, qs, request } from "./api.js";
import { confirmDialog, errorBox, h, state, table } from "./ui.js";

function field(label, name, attrs) {
  return h("label", {}, label, h("input", { name, required: true, ...(attrs || {}) }));
}

async function regions(box, ctx, redraw) {
  const list = await get(mgmt("replications"), { signal: ctx.signal });
  const msg = h("p", { role: "status", id: "region-msg" });
  const form = h("form", { class: "inline", id: "add-region", "aria-label": "Add a region" },
    field("Region name", "location", { pattern: "[a-z0-9-]{1,63}" }),
    field("Endpoint URL", "endpoint", { type: "url", placeholder: "https://eu.example:5000", size: 32 }),
    h("button", { type: "submit", class: "primary" }, "Add region"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const location = form.location.value, endpoint = form.endpoint.value;
    if (!await confirmDialog(`Add region ${location} at ${endpoint}? It will replicate every image.`,
                             "Add region")) return;
    try {
      await request("POST", mgmt("replications"), { body: { location, endpoint } });
      redraw(`Region ${location} added.`);
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  box.append(table([{ title: "Region" }, { title: "State" }, { title: "Endpoint" }, { title: "" }],
    list.map((r) => h("tr", { "data-region": r.location },
      h("td", {}, r.location), h("td", {}, state(r.state)), h("td", { class: "mono" }, r.endpoint),
      h("td", {}, r.isLocal ? h("span", { class: "muted" }, "this region") :
        h("button", { type: "button", class: "danger", "data-remove": r.location,
                      "aria-label": `Remove region ${r.location}`,
                      onclick: async () => {
                        if (!await confirmDialog(`Remove region ${r.location}? It stops ` +
                                                 "replicating with this registry.", "Remove")) return;
                        try {
                          await request("DELETE", mgmt("replications/" + encodeURIComponent(r.location)));
                          redraw(`Region ${r.location} removed.`);
                        } catch (e) { msg.replaceChildren(errorBox(e)); }
                      } }, "Remove")))), { id: "admin-regions" }),
    form, msg);
}

async function roles(box, ctx, redraw) {
  const list = await get(mgmt("roles"), { signal: ctx.signal });
  const msg = h("p", { role: "status" });
  const form = h("form", { class: "inline", id: "assign-role", "aria-label": "Assign a role" },
    field("User or robot", "subject"),
    h("label", {}, "Role", h("select", { name: "role" },
      ["consumer", "publisher", "admin"].map((r) => h("option", { value: r }, r)))),
    field("Repository pattern", "pattern", { placeholder: "golden/*" }),
    h("button", { type: "submit", class: "primary" }, "Assign"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = { subject: form.subject.value, role: form.role.value, pattern: form.pattern.value };
    if (!await confirmDialog(`Give ${b.subject} the role ${b.role} on ${b.pattern}?`, "Assign")) return;
    try {
      await request("POST", mgmt("roles"), { body: b });
      redraw(`Role assigned.`);
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  const rows = (Array.isArray(list) ? list : list.roles || []);
  box.append(table([{ title: "Subject" }, { title: "Role" }, { title: "Pattern" }, { title: "" }],
    rows.map((b) => h("tr", {},
      h("td", {}, b.subject), h("td", {}, b.role), h("td", { class: "mono" }, b.pattern),
      h("td", {}, h("button", { type: "button", class: "danger",
        "aria-label": `Revoke ${b.role} on ${b.pattern} from ${b.subject}`,
        onclick: async () => {
          if (!await confirmDialog(`Revoke ${b.role} on ${b.pattern} from ${b.subject}?`, "Revoke")) return;
          try {
            await request("DELETE", mgmt("roles?" + qs({ subject: b.subject, role: b.role,
                                                        pattern: b.pattern })));
            redraw("Role revoked.");
          } catch (e) { msg.replaceChildren(errorBox(e)); }
        } }, "Revoke"))))),
    form, msg);
}

async function webhooks(box, ctx, redraw) {
  const list = await get(mgmt("webhooks"), { signal: ctx.signal });
  const msg = h("p", { role: "status" });
  box.append(list.length === 0 ? h("p", { class: "muted" }, "No webhooks.") :
    table([{ title: "Webhook" }, { title: "Region" }, { title: "Actions" }, { title: "Scope" },
           { title: "Receiver" }, { title: "" }],
      list.map((w) => h("tr", { "data-webhook": w.name },
        h("td", {}, w.name), h("td", {}, w.location), h("td", {}, (w.actions || []).join(", ")),
        h("td", { class: "mono" }, w.scope), h("td", { class: "mono" }, w.uri),
        h("td", {}, h("button", { type: "button", class: w.enabled ? "danger" : "primary",
          "data-toggle": w.name,
          onclick: async () => {
            const verb = w.enabled ? "Disable" : "Enable";
            if (!await confirmDialog(`${verb} webhook ${w.name}?` + (w.enabled
              ? " Its receiver gets no more deliveries until it is enabled again." : ""), verb)) return;
            try {
              await request("PATCH", mgmt("webhooks/" + encodeURIComponent(w.name)),
                            { body: { enabled: !w.enabled } });
              redraw(`Webhook ${w.name} ${w.enabled ? "disabled" : "enabled"}.`);
            } catch (e) { msg.replaceChildren(errorBox(e)); }
          } }, w.enabled ? "Disable" : "Enable"))))),
    msg);
}

export async function render(main, ctx) {
  main.append(h("h1", {}, "Admin"));
  if (!ctx.session.isAdmin) {
    main.append(h("p", { class: "card" }, "These actions need the admin role."));
    return;
  }
  const note = h("p", { role: "status", id: "admin-note" });
  const reg = h("section", { "aria-labelledby": "adm-regions" });
  const rol = h("section", { "aria-labelledby": "adm-roles" });
  const hooks = h("section", { "aria-labelledby": "adm-hooks" });
  main.append(note, h("h2", { id: "adm-regions" }, "Regions"), reg,
              h("h2", { id: "adm-roles" }, "Roles"), rol,
              h("h2", { id: "adm-hooks" }, "Webhooks"), hooks);
  const redraw = async (text) => {
    note.textContent = text || "";
    reg.replaceChildren();
    rol.replaceChildren();
    hooks.replaceChildren();
    await Promise.all([regions(reg, ctx, redraw).catch((e) => reg.append(errorBox(e))),
                       roles(rol, ctx, redraw).catch((e) => rol.append(errorBox(e))),
                       webhooks(hooks, ctx, redraw).catch((e) => hooks.append(errorBox(e)))]);
  };
  await redraw();
}
