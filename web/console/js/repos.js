// Repositories (the catalog, filtered by what the user may pull) with a search box, and
// one repository's tags, each linking to its version page.
import { catalog, get } from "./api.js";
import { errorBox, h, table } from "./ui.js";

const SHOWN_MAX = 200; // rows drawn at once: the search narrows the rest

const versionHref = (repo, ref) =>
  "#/version?" + new URLSearchParams({ repo, ref }).toString();

async function renderList(main, ctx) {
  const search = h("input", { type: "search", id: "repo-search", placeholder: "Filter by name",
                              "aria-controls": "repo-list", value: ctx.params.get("q") || "" });
  const count = h("span", { class: "muted", id: "repo-count", "aria-live": "polite" });
  const list = h("div", { id: "repo-list" }, h("p", { class: "muted" }, "Loading…"));
  main.append(h("h1", {}, "Repositories"),
    h("div", { class: "toolbar", role: "search" },
      h("label", { for: "repo-search" }, "Search"), search, count),
    list);
  const repos = await catalog();
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const hits = q ? repos.filter((r) => r.toLowerCase().includes(q)) : repos;
    count.textContent = hits.length > SHOWN_MAX
      ? `${hits.length} of ${repos.length} (first ${SHOWN_MAX} shown)`
      : `${hits.length} of ${repos.length}`;
    list.replaceChildren(hits.length === 0 ? h("p", {}, "No repository matches.") :
      table([{ title: "Repository" }],
        hits.slice(0, SHOWN_MAX).map((r) => h("tr", {},
          h("td", {}, h("a", { href: "#/repo?" + new URLSearchParams({ repo: r }) }, r)))),
        { id: "repos-table" }));
  };
  search.addEventListener("input", show);
  show();
  performance.mark("repos-listed"); // the first paint of the list (tests/e2e/test_console.py)
  main.dataset.ready = "true";
}

async function renderRepo(main, ctx) {
  const repo = ctx.params.get("repo") || "";
  main.append(h("p", {}, h("a", { href: "#/repos" }, "← Repositories")),
              h("h1", {}, repo));
  try {
    const tags = await get(`/v2/${repo}/tags/list`, { signal: ctx.signal });
    const list = (tags.tags || []).slice().sort();
    main.append(list.length === 0 ? h("p", {}, "No tags.") :
      table([{ title: "Tag" }], list.map((t) =>
        h("tr", {}, h("td", {}, h("a", { href: versionHref(repo, t) }, t))))));
  } catch (e) {
    main.append(errorBox(e));
  }
}

export function render(main, ctx) {
  return ctx.name === "repo" ? renderRepo(main, ctx) : renderList(main, ctx);
}
