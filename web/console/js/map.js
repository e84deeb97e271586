// The region map: every region of the registry on a world map (Natural Earth countries from
// npm's world-atlas, projected with d3-geo), placed by its --region-location and coloured
// by its state; the links from the answering region to the others carry their lag and
// throughput. Refreshed every 2 s from GET /_meridian/v1/replications (admins: the
// topology is the operator's business, README "Access control").
import { get, mgmt } from "./api.js";
import { bytes, errorBox, h, state, svg, table } from "./ui.js";

const W = 960, H = 500, REFRESH_MS = 2000;
const STATES = ["Ready", "Syncing", "Unreachable", "Removed"];
let vendor = null;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error("cannot load " + src));
    document.head.append(s);
  });
}

// The third-party map code, loaded when the map is first shown (not on the first paint).
function loadVendor() {
  vendor ||= (async () => {
    try {
      await loadScript("vendor/d3-array.min.js");
      await loadScript("vendor/d3-geo.min.js");
      await loadScript("vendor/topojson-client.min.js");
      const resp = await fetch("vendor/countries-110m.json");
      if (!resp.ok) throw new Error("no map data");
      return { d3: window.d3, topojson: window.topojson, world: await resp.json() };
    } catch {
      return null; // npm packages not installed: regions on a plain grid, and a note
    }
  })();
  return vendor;
}

function projector(v) {
  if (v) {
    const p = v.d3.geoNaturalEarth1().fitExtent([[8, 8], [W - 8, H - 8]], { type: "Sphere" });
    return { project: (lon, lat) => p([lon, lat]), path: v.d3.geoPath(p), d3: v.d3 };
  }
  // Equirectangular, for lack of d3-geo.
  return { project: (lon, lat) => [(lon + 180) / 360 * W, (90 - lat) / 180 * H], path: null };
}

function base(v, proj) {
  const g = svg("g", { "aria-hidden": "true" });
  if (v) {
    const { d3, topojson, world } = v;
    g.append(svg("path", { class: "graticule", d: proj.path(d3.geoGraticule10()) }),
             svg("path", { class: "land", d: proj.path(topojson.feature(world, world.objects.countries)) }),
             svg("path", { class: "graticule", d: proj.path({ type: "Sphere" }) }));
  }
  return g;
}

const placed = (r) => typeof r.latitude === "number" && typeof r.longitude === "number";

function rate(r, prev, now) {
  const p = prev.get(r.location);
  if (!p || now <= p.t) return null;
  return Math.max(0, (r.bytesCopied - p.bytes) / ((now - p.t) / 1000));
}

function linkLabel(r, tput) {
  const parts = [`lag ${r.lagEvents} ev`];
  if (r.lagSeconds) parts.push(`${r.lagSeconds.toFixed(1)} s`);
  if (tput !== null && tput !== undefined) parts.push(`${bytes(Math.round(tput))}/s`);
  return parts.join(" · ");
}

export async function render(main, ctx) {
  main.append(h("h1", {}, "Regions"));
  if (!ctx.session.isAdmin) {
    main.append(h("p", { class: "card" },
      "The region map shows the registry's topology (endpoints, lag, bytes), which needs " +
      "the admin role. Each version's page shows where it is replicated."));
    return;
  }
  const v = await loadVendor();
  const proj = projector(v);
  const links = svg("g", {});
  const dots = svg("g", {});
  const map = svg("svg", { class: "map", viewBox: `0 0 ${W} ${H}`, role: "group",
                           "aria-label": "World map of the registry's regions" },
    base(v, proj), links, dots);
  const details = h("aside", { class: "card", id: "region-details", "aria-live": "polite" },
    h("p", { class: "muted" }, "Select a region for its details."));
  const legend = h("p", { class: "legend" },
    STATES.map((s) => h("span", { class: "lg-" + s }, s)));
  const note = v ? null : h("p", { class: "muted" },
    "Map data is not installed (scripts/install-deps.sh installs it from npm): regions " +
    "are placed on a plain grid.");
  const list = h("div", {});
  main.append(legend, h("div", { class: "map-wrap" }, map, details), note || "",
              h("h2", {}, "All regions"), list);

  let selected = null;
  const prev = new Map(); // region -> {bytes, t}: throughput between refreshes
  let last = [];

  function showDetails(r, tput) {
    details.replaceChildren(h("h2", { id: "details-h" }, r.location, " ", state(r.state)),
      h("dl", { class: "kv", "aria-labelledby": "details-h" },
        h("dt", {}, "Endpoint"), h("dd", { class: "mono" }, r.endpoint),
        h("dt", {}, "Role"), h("dd", {}, r.isLocal ? "this region (answering)" : "peer"),
        h("dt", {}, "Events behind"), h("dd", {}, r.lagEvents),
        h("dt", {}, "Lag"), h("dd", {}, `${(r.lagSeconds || 0).toFixed(1)} s`),
        h("dt", {}, "Round trip"), h("dd", {}, r.rttMs ? `${r.rttMs.toFixed(1)} ms` : "–"),
        h("dt", {}, "Bytes copied from it"), h("dd", {}, bytes(r.bytesCopied)),
        h("dt", {}, "Throughput"), h("dd", {}, tput === null ? "–" : `${bytes(Math.round(tput))}/s`),
        r.isLocal ? [h("dt", {}, "Bytes still to copy"), h("dd", {}, bytes(r.bytesToCopy))] : null,
        h("dt", {}, "Location"),
        h("dd", {}, placed(r) ? `${r.latitude.toFixed(2)}, ${r.longitude.toFixed(2)}`
                               : "not set (--region-location)")));
  }

  function select(name) {
    selected = name;
    draw(last);
  }

  function draw(regions) {
    last = regions;
    const now = performance.now();
    const tputs = new Map(regions.map((r) => [r.location, rate(r, prev, now)]));
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.region : null;
    const local = regions.find((r) => r.isLocal);
    links.replaceChildren();
    if (local && placed(local)) {
      for (const r of regions) {
        if (r === local || !placed(r)) continue;
        const a = [local.longitude, local.latitude], b = [r.longitude, r.latitude];
        const d = proj.path ? proj.path({ type: "LineString", coordinates: [a, b] })
          : `M${proj.project(...a).join(",")}L${proj.project(...b).join(",")}`;
        const mid = proj.d3 ? proj.project(...proj.d3.geoInterpolate(a, b)(0.5))
          : proj.project((a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
        links.append(svg("path", { class: "link" + (r.state === "Unreachable" ? " down" : ""),
                                   d, "data-link": `${local.location}-${r.location}` }),
                     svg("text", { class: "link-label", x: mid[0], y: mid[1] - 4,
                                   "text-anchor": "middle" }, linkLabel(r, tputs.get(r.location))));
      }
    }
    dots.replaceChildren();
    for (const r of regions.filter(placed)) {
      const [x, y] = proj.project(r.longitude, r.latitude);
      const g = svg("g", { class: "region" + (r.location === selected ? " selected" : ""),
                           "data-region": r.location, "data-state": r.state, tabindex: "0",
                           role: "button", "aria-label": `Region ${r.location}: ${r.state}`,
                           transform: `translate(${x},${y})` },
        svg("circle", { r: r.isLocal ? 10 : 8, class: "f-" + r.state }),
        svg("text", { x: 13, y: 5 }, r.location));
      g.addEventListener("click", () => select(r.location));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(r.location); }
      });
      dots.append(g);
    }
    list.replaceChildren(table(
      [{ title: "Region" }, { title: "State" }, { title: "Endpoint" },
       { title: "Events behind", num: true }, { title: "Lag (s)", num: true },
       { title: "Round trip (ms)", num: true }, { title: "Throughput", num: true }],
      regions.map((r) => h("tr", { "data-region": r.location, "data-state": r.state },
        h("td", {}, h("button", { type: "button", onclick: () => select(r.location) },
                      r.location + (r.isLocal ? " (this region)" : ""))),
        h("td", {}, state(r.state)), h("td", { class: "mono" }, r.endpoint),
        h("td", { class: "num" }, r.lagEvents), h("td", { class: "num" }, (r.lagSeconds || 0).toFixed(1)),
        h("td", { class: "num" }, r.rttMs ? r.rttMs.toFixed(1) : "–"),
        h("td", { class: "num" }, tputs.get(r.location) === null ? "–"
          : `${bytes(Math.round(tputs.get(r.location)))}/s`))),
      { id: "regions-table" }));
    const sel = regions.find((r) => r.location === selected);
    if (sel) showDetails(sel, tputs.get(sel.location));
    if (focused) {
      const again = dots.querySelector(`[data-region="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    for (const r of regions) prev.set(r.location, { bytes: r.bytesCopied, t: now });
  }

  const status = h("p", { class: "muted", id: "map-status" });
  main.append(status);
  while (!ctx.signal.aborted) {
    try {
      const regions = await get(mgmt("replications"), { signal: ctx.signal });
      regions.sort((a, b) => a.location.localeCompare(b.location));
      draw(regions);
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (e.name === "AbortError") return;
      status.replaceChildren(errorBox(e));
    }
    await new Promise((r) => setTimeout(r, REFRESH_MS));
  }
}
