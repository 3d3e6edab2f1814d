// Live regions: an element with data-live="URL" takes the HTML of each `figures` event that
// the server-sent event stream at URL sends (docs/admin-ui.md, "Dashboard"). When the stream
// is refused (the session ended), the page is reloaded, which leads to the sign-in page.
document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live]")) {
    const source = new EventSource(region.dataset.live);
    source.addEventListener("figures", (event) => {
      region.innerHTML = event.data;
      region.dataset.updated = String(Number(region.dataset.updated || "0") + 1);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) window.location.reload();
    });
  }
});
