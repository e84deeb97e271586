// One image version (repository + tag or digest): its replication in every target region
// with progress bars that move live, its publishing profile when the server has one, and
// its referrers (signatures, SBOMs). Live: a long poll of GET image-versions with the
// ETag of the last answer (?wait=25): the server answers as soon as the status differs.
// Admins may change the target regions (PATCH image-versions, after a confirmation).
import { get, mgmt, qs, request } from "./api.js";
import { bytes, confirmDialog, errorBox, h, state, table } from "./ui.js";

const KNOWN = new Set(["repository", "reference", "digest", "mediaType", "size",
                       "replicationStatus", "publishingProfile", "safetyProfile", "isEndOfLife",
                       "version", "sourceRegion"]);
const KNOWN_ROW = new Set(["region", "state", "bytesCopied", "bytesTotal", "updatedAt",
                           "details"]);
const WAIT_S = 25;

const show = (v) => (v === null || v === undefined ? "–"
  : typeof v === "object" ? JSON.stringify(v) : String(v));

function progress(e) {
  const total = e.bytesTotal || 0;
  const done = e.state === "Completed" ? total : Math.min(e.bytesCopied || 0, total);
  const pct = total ? Math.round(100 * done / total) : (e.state === "Completed" ? 100 : 0);
  return h("progress", { max: total || 1, value: total ? done : (e.state === "Completed" ? 1 : 0),
                         "aria-label": `${e.region}: ${pct}% copied` });
}

export async function render(main, ctx) {
  const repo = ctx.params.get("repo") || "";
  const ref = ctx.params.get("ref") || "";
  const facts = h("dl", { class: "kv card", id: "version-facts" });
  const live = h("p", { class: "muted", id: "live", "aria-live": "polite" }, "Loading…");
  const body = h("tbody", {});
  const regions = h("table", { id: "replication" },
    h("caption", { class: "muted" }, "Replication per region"),
    h("thead", {}, h("tr", {}, ["Region", "State", "Progress", "Bytes", "Updated",
                                "Details", "Seen"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  const profile = h("div", { id: "profile" });
  const editor = h("div", { id: "regions-editor" });
  const referrers = h("div", { id: "referrers" });
  main.append(
    h("p", {}, h("a", { href: "#/repo?" + new URLSearchParams({ repo }) }, "← " + repo)),
    h("h1", {}, `${repo}:${ref}`), facts, h("h2", {}, "Replication"), live, regions,
    profile, editor, h("h2", {}, "Referrers"), referrers);

  const history = new Map(); // region -> states seen, in order (the row's timeline)
  let digest = null;

  let iv_version = null;
  function update(iv) {
    iv_version = iv.version || null;
    const rs = iv.replicationStatus || {};
    facts.replaceChildren(
      h("dt", {}, "Digest"), h("dd", { class: "mono" }, iv.digest),
      h("dt", {}, "Media type"), h("dd", { class: "mono" }, iv.mediaType),
      h("dt", {}, "Size"), h("dd", {}, bytes(iv.size)),
      h("dt", {}, "Replication"), h("dd", { id: "aggregate" }, state(rs.aggregatedState || "Pending")));
    const rows = (rs.summary || []).map((e) => {
      const seen = history.get(e.region) || [];
      if (seen[seen.length - 1] !== e.state) seen.push(e.state);
      history.set(e.region, seen);
      const extra = Object.entries(e).filter(([k]) => !KNOWN_ROW.has(k));
      return h("tr", { "data-region": e.region, "data-state": e.state,
                       "data-seen": seen.join(" ") },
        h("th", { scope: "row" }, e.region), h("td", {}, state(e.state)),
        h("td", {}, progress(e)),
        h("td", { class: "num" }, `${bytes(e.bytesCopied)} of ${bytes(e.bytesTotal)}`),
        h("td", {}, e.updatedAt ? new Date(e.updatedAt).toLocaleTimeString() : "–"),
        h("td", {}, e.details || "", extra.map(([k, v]) => h("div", {}, `${k}: ${show(v)}`))),
        h("td", { class: "history" }, seen.join(" → ")));
    });
    body.replaceChildren(...rows);
    showProfile(iv);
    if (iv.digest !== digest) {
      digest = iv.digest;
      loadReferrers();
    }
  }

  // The publishing profile (docs/image-versions.md): target regions with `latest` as each
  // of them resolves it, end of life, mode; other fields as the server names them.
  let profileKey = null;
  function showProfile(iv) {
    const pp = iv.publishingProfile;
    const extra = Object.entries(iv).filter(([k]) => !KNOWN.has(k));
    if (!pp) {
      profile.replaceChildren(...(extra.length === 0 ? [] : [h("h2", {}, "Other fields"),
        h("dl", { class: "kv card" }, extra.map(([k, v]) => [h("dt", {}, k), h("dd", {}, show(v))]))]));
      return;
    }
    const key = JSON.stringify([pp, iv.safetyProfile, iv.isEndOfLife, extra]);
    // `latest` moves with the copies (a region resolves it to what it holds): asked again
    // at every change; the rest is redrawn only when the profile changed.
    if (key === profileKey) {
      for (const t of pp.targetRegions || []) loadLatest(t.name);
      return;
    }
    profileKey = key;
    const eol = pp.endOfLifeDate ? new Date(pp.endOfLifeDate) : null;
    const days = eol ? Math.ceil((eol - Date.now()) / 86400000) : null;
    const targets = pp.targetRegions || [];
    profile.replaceChildren(h("h2", {}, "Publishing profile"),
      h("dl", { class: "kv card", id: "profile-fields" },
        h("dt", {}, "Source region"), h("dd", {}, iv.sourceRegion || "–"),
        h("dt", {}, "Published"), h("dd", {}, pp.publishedDate ? new Date(pp.publishedDate).toLocaleString() : "–"),
        h("dt", {}, "End of life"), h("dd", { id: "end-of-life" },
          !eol ? "none" : iv.isEndOfLife
            ? h("span", { class: "state s-Failed" }, `ended ${eol.toLocaleDateString()}`)
            : `${eol.toLocaleDateString()} (in ${days} day${days === 1 ? "" : "s"})`),
        h("dt", {}, "Replication mode"), h("dd", {}, pp.replicationMode || "–"),
        h("dt", {}, "Excluded from latest"), h("dd", {}, pp.excludeFromLatest ? "yes, everywhere" : "no"),
        iv.safetyProfile ? [h("dt", {}, "Deleting copies"), h("dd", {},
          iv.safetyProfile.allowDeletionOfReplicatedLocations ? "allowed" : "refused")] : [],
        extra.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, show(v))])),
      table([{ title: "Target region" }, { title: "Replicas", num: true },
             { title: "Storage class" }, { title: "In latest" }, { title: "latest there" }],
        targets.map((t) => h("tr", { "data-target": t.name },
          h("th", { scope: "row" }, t.name), h("td", { class: "num" }, t.regionalReplicaCount),
          h("td", {}, t.storageClass || "–"),
          h("td", {}, pp.excludeFromLatest || t.excludeFromLatest ? "excluded" : "yes"),
          h("td", { "data-latest": t.name }, "…"))), { id: "targets" }));
    for (const t of targets) loadLatest(t.name);
    if (ctx.session.isAdmin) showEditor(targets.map((t) => t.name), iv.sourceRegion);
  }

  // `latest` as region resolves it (GET image-versions?repository=&region=).
  async function loadLatest(region) {
    try {
      const l = await get(mgmt("image-versions?" + qs({ repository: repo, region })),
                          { signal: ctx.signal });
      const cell = profile.querySelector(`td[data-latest="${CSS.escape(region)}"]`);
      if (!cell) return;
      const isThis = l.latest && l.latest === (iv_version || ref);
      cell.replaceChildren(!l.latest ? h("span", { class: "muted" }, "none")
        : isThis ? h("strong", {}, `${l.latest} (this version)`) : l.latest);
    } catch (e) {
      if (e.name !== "AbortError") profile.querySelector(`td[data-latest="${CSS.escape(region)}"]`)
        ?.replaceChildren(errorBox(e));
    }
  }

  // Admins: change the target regions (every region known here, the source fixed), after a
  // confirmation that names what is added and removed. The table follows by the long poll.
  async function showEditor(current, source) {
    let known = [];
    try {
      known = (await get(mgmt("replications"), { signal: ctx.signal })).map((r) => r.location);
    } catch (e) {
      if (e.name !== "AbortError") editor.replaceChildren(errorBox(e));
      return;
    }
    const all = [...new Set([ctx.session.region, ...known, ...current])].filter(Boolean).sort();
    const msg = h("p", { id: "regions-msg", "aria-live": "polite" });
    const form = h("form", { class: "inline", id: "update-regions",
                             "aria-label": "Update target regions" },
      h("fieldset", {}, h("legend", {}, "Target regions"),
        all.map((name) => h("label", { class: "check" },
          h("input", { type: "checkbox", name: "region", value: name,
                       checked: current.includes(name), disabled: name === source }),
          name === source ? `${name} (source)` : name))),
      h("button", { type: "submit", class: "primary" }, "Update target regions"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const wanted = [...form.querySelectorAll("input[name=region]")]
        .filter((i) => i.checked).map((i) => i.value);
      const add = wanted.filter((n) => !current.includes(n));
      const remove = current.filter((n) => !wanted.includes(n) && n !== source);
      if (add.length === 0 && remove.length === 0) {
        msg.textContent = "Nothing to change.";
        return;
      }
      const q = [add.length ? `add ${add.join(", ")}` : "",
                 remove.length ? `remove ${remove.join(", ")} (its copies there are deleted)` : ""]
        .filter(Boolean).join(" and ");
      if (!await confirmDialog(`Update ${repo}:${ref}: ${q}?`, "Update")) return;
      try {
        await request("PATCH", mgmt("image-versions?" + qs({ repository: repo, reference: ref })),
                      { body: Object.assign(add.length ? { addRegions: add } : {},
                                            remove.length ? { removeRegions: remove } : {}) });
        msg.replaceChildren("Updated; the table follows as the regions copy.");
      } catch (e) {
        msg.replaceChildren(errorBox(e));
      }
    });
    editor.replaceChildren(h("h2", {}, "Admin"), form, msg);
  }

  async function loadReferrers() {
    try {
      const idx = await get(`/v2/${repo}/referrers/${digest}`, { signal: ctx.signal });
      const list = idx.manifests || [];
      referrers.replaceChildren(list.length === 0 ? h("p", { class: "muted" }, "None.") :
        table([{ title: "Artifact type" }, { title: "Digest" }, { title: "Size", num: true }],
          list.map((m) => h("tr", {}, h("td", {}, m.artifactType || m.mediaType),
            h("td", { class: "mono" }, m.digest), h("td", { class: "num" }, bytes(m.size))))));
    } catch (e) {
      if (e.name !== "AbortError") referrers.replaceChildren(errorBox(e));
    }
  }

  let etag = null;
  while (!ctx.signal.aborted) {
    try {
      const url = mgmt("image-versions?" + qs({ repository: repo, reference: ref,
                                                wait: etag ? WAIT_S : undefined }));
      const r = await request("GET", url, { etag, signal: ctx.signal });
      if (r.notModified) continue;
      etag = r.etag;
      update(r.data);
      live.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (e.name === "AbortError") return;
      live.replaceChildren(e.status === 404
        ? h("span", {}, "This version is not in this region yet; waiting for it…")
        : errorBox(e));
      await new Promise((res) => setTimeout(res, e.status === 404 ? 1000 : 3000));
    }
  }
}
