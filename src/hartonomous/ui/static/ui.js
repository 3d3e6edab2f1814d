// Live regions: an element with data-live="URL" takes the HTML of each `figures` event that
// the server-sent event stream at URL sends (docs/admin-ui.md, "Dashboard"). When the stream
// is refused (the session ended), the page is reloaded, which leads to the sign-in page.
document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live]")) {
    const source = new EventSource(region.dataset.live);
    source.addEventListener("figures", (event) => {
      region.innerHTML = event.data;
      region.dataset.updated = String(Number(region.dataset.updated || "0") + 1);
      document.dispatchEvent(new CustomEvent("figures-updated"));
    });
    source.addEventListener("signed-out", () => {
      source.close();
      window.location.reload();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) window.location.reload();
    });
  }
});

// Charts: an element with data-chart='{"range": [from, until], "days": [...], "dcu": [...]}'
// (UTC days, ISO) gets a uPlot bar chart
// (static/uPlot.iife.min.js, loaded by the pages that have one).
document.addEventListener("DOMContentLoaded", () => {
  if (typeof uPlot === "undefined") return;
  for (const box of document.querySelectorAll("[data-chart]")) {
    const data = JSON.parse(box.dataset.chart);
    if (!data.days.length) continue;
    const epoch = (day) => Date.parse(day + "T00:00:00Z") / 1000;
    const xs = data.days.map((day) => epoch(day) + 43200); // each bar at its day's noon
    const [from, until] = data.range.map(epoch);
    new uPlot({
      width: Math.min(box.clientWidth || 800, 900),
      height: 240,
      scales: {x: {time: true, range: () => [from, until]}},
      legend: {show: false},
      series: [{}, {label: "DCU", stroke: "#0b5394", fill: "rgba(11,83,148,0.25)",
                    paths: uPlot.paths.bars({size: [0.6, 16]})}],
      axes: [{stroke: "#1a1a1a"}, {stroke: "#1a1a1a"}],
    }, [xs, data.dcu], box);
  }
});

// Category charts: an element with data-categories='{"labels": [...], "dcu": [...]}' gets a
// uPlot bar per label (the x axis names them); the table beside it holds the same figures.
document.addEventListener("DOMContentLoaded", () => {
  if (typeof uPlot === "undefined") return;
  for (const box of document.querySelectorAll("[data-categories]")) {
    const data = JSON.parse(box.dataset.categories);
    if (!data.labels.length) continue;
    const xs = data.labels.map((_, i) => i);
    new uPlot({
      width: Math.min(box.clientWidth || 800, 900),
      height: 240,
      scales: {x: {time: false, range: () => [-0.5, data.labels.length - 0.5]}},
      legend: {show: false},
      series: [{}, {label: "DCU", stroke: "#0b5394", fill: "rgba(11,83,148,0.25)",
                    paths: uPlot.paths.bars({size: [0.6, 64]})}],
      axes: [{stroke: "#1a1a1a", splits: () => xs, values: (_, splits) => splits.map((i) => data.labels[i] ?? "")},
             {stroke: "#1a1a1a"}],
    }, [xs, data.dcu], box);
  }
});

// The dashboard's throughput chart: #throughput-chart (outside the live region, so it stays)
// draws the series in #throughput-data (inside it), again after each `figures` event.
(() => {
  let chart = null;
  const draw = () => {
    const box = document.getElementById("throughput-chart");
    const source = document.getElementById("throughput-data");
    if (!box || !source || typeof uPlot === "undefined") return;
    const series = JSON.parse(source.dataset.series);
    const data = [series.t, series.completed, series.dead_lettered];
    box.dataset.completed = String(series.completed.reduce((sum, n) => sum + n, 0));
    if (chart) { chart.setData(data); return; }
    chart = new uPlot({
      width: Math.min(box.clientWidth || 800, 900),
      height: 200,
      scales: {x: {time: true}},
      series: [{}, {label: "completed", stroke: "#0b5394", fill: "rgba(11,83,148,0.15)"},
               {label: "dead-lettered", stroke: "#a4000f"}],
      axes: [{stroke: "#1a1a1a"}, {stroke: "#1a1a1a"}],
    }, data, box);
  };
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("figures-updated", draw);
})();

// htmx swaps 2xx answers only; a refusal (4xx) carries the message the user must see, so it is
// swapped too: a fragment (e.g. "Tick at least one dead letter to replay.") as it is, a whole
// error page (e.g. a refused CSRF token) as its message in an alert. 5xx stay unswapped.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status < 400 || xhr.status >= 500) return;
  const body = xhr.responseText || "";
  if (/<html[\s>]/i.test(body)) {
    const page = new DOMParser().parseFromString(body, "text/html");
    const said = page.querySelector("main") || page.body;
    const alert = document.createElement("p");
    alert.className = "field-error";
    alert.setAttribute("role", "alert");
    alert.textContent = (said ? said.textContent : "").replace(/\s+/g, " ").trim();
    event.detail.serverResponse = alert.outerHTML;
    event.detail.selectOverride = "[role=alert]"; // an element's hx-select would miss it
  }
  event.detail.shouldSwap = true;
  event.detail.isError = false;
});
