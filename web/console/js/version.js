// One image version (repository + tag or digest): its replication in every target region
// with progress bars that move live, its publishing profile when the server has one, and
// its referrers (signatures, SBOMs). Live: a long poll of GET image-versions with the
// ETag of the last answer (?wait=25): the server answers as soon as the status differs.
import { get, mgmt, qs, request } from "./api.js";
import { bytes, errorBox, h, state, table } from "./ui.js";

const KNOWN = new Set(["repository", "reference", "digest", "mediaType", "size",
                       "replicationStatus"]);
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
  const referrers = h("div", { id: "referrers" });
  main.append(
    h("p", {}, h("a", { href: "#/repo?" + new URLSearchParams({ repo }) }, "← " + repo)),
    h("h1", {}, `${repo}:${ref}`), facts, h("h2", {}, "Replication"), live, regions,
    profile, h("h2", {}, "Referrers"), referrers);

  const history = new Map(); // region -> states seen, in order (the row's timeline)
  let digest = null;

  function update(iv) {
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
    // Fields beyond the replication status: the publishing profile (target regions,
    // latest per region, end of life), shown as the server names them.
    const extra = Object.entries(iv).filter(([k]) => !KNOWN.has(k));
    profile.replaceChildren(...(extra.length === 0 ? [] : [
      h("h2", {}, "Publishing profile"),
      h("dl", { class: "kv card", id: "profile-fields" },
        extra.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, show(v))]))]));
    if (iv.digest !== digest) {
      digest = iv.digest;
      loadReferrers();
    }
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
