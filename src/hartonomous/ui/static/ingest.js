// The ingestion page (docs/admin-ui.md, "Ingestion"): sends the chosen files as one multipart
// upload with XMLHttpRequest, showing a progress bar per file while the body is sent (the
// parts go in order, so the bytes sent so far say how far each file is), then polls the job's
// progress until it is terminal, showing each file's outcome and the reason of a failure.
// Without this script the form posts normally and the server redirects to the job's page.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const token = form.querySelector("input[name=csrf_token]").value;
  const problem = document.getElementById("files-error");
  const section = document.getElementById("upload");
  const rows = section.querySelector("tbody");
  const status = document.getElementById("upload-status");
  const jobLink = document.getElementById("upload-job");

  const say = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
    const field = document.getElementById("files");
    if (message) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
  };

  const row = (file, index) => {
    const tr = document.createElement("tr");
    tr.dataset.ordinal = String(index);
    const name = document.createElement("td");
    name.textContent = file.webkitRelativePath || file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", `Progress of ${name.textContent}`);
    const barCell = document.createElement("td");
    barCell.append(bar);
    const outcome = document.createElement("td");
    outcome.className = "outcome";
    outcome.textContent = "uploading";
    const reason = document.createElement("td");
    reason.className = "reason";
    tr.append(name, barCell, outcome, reason);
    return tr;
  };

  // The job history below the form: read again when a job starts and when it ends, so the
  // upload just made is listed without a reload (only on the first page: an older page's
  // rows do not change).
  const refreshHistory = async () => {
    const shown = document.getElementById("history-section");
    if (!shown || shown.dataset.older) return;
    const answer = await fetch(form.action, {headers: {Accept: "text/html"}});
    if (!answer.ok) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById("history-section");
    if (fresh) shown.replaceWith(fresh);
  };

  const follow = async (url) => {
    for (;;) {
      const answer = await fetch(url, {headers: {Accept: "application/json"}});
      if (!answer.ok) { status.textContent = `progress unavailable (${answer.status})`; return; }
      const job = await answer.json();
      for (const file of job.files) {
        const tr = rows.querySelector(`tr[data-ordinal="${file.ordinal}"]`);
        if (!tr) continue;
        tr.querySelector("progress").value = 100;
        tr.querySelector(".outcome").textContent = file.status === "failed" ? "failed" : "done";
        tr.querySelector(".reason").textContent = file.error || "";
        tr.className = file.status === "failed" ? "bad" : "ok";
      }
      status.textContent = `${job.status}: ${job.files_done} of ${job.files_total} files done, ${job.files_failed} failed`;
      if (job.terminal) { await refreshHistory(); return; }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const files = [...form.querySelectorAll("input[type=file]")].flatMap((input) => [...input.files]);
    if (!files.length) { say("Choose one or more files, or a folder."); return; }
    say("");
    const body = new FormData();
    for (const file of files) body.append("files", file, file.name);
    rows.replaceChildren(...files.map(row));
    section.hidden = false;
    status.textContent = "uploading";
    jobLink.textContent = "not started yet";
    jobLink.removeAttribute("href");
    const ends = [];
    let total = 0;
    for (const file of files) { total += file.size; ends.push(total); }
    const bars = [...rows.querySelectorAll("progress")];
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRF-Token", token);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (sent) => {
      // The multipart framing is small beside the files: scale it away.
      const bytes = sent.lengthComputable ? (sent.loaded / sent.total) * total : 0;
      files.forEach((file, i) => {
        const start = ends[i] - file.size;
        const part = file.size ? Math.min(Math.max((bytes - start) / file.size, 0), 1) : 1;
        bars[i].value = Math.round(part * 50); // the first half: sent; the second: ingested
      });
    });
    request.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch { answer = {}; }
      if (request.status !== 202) {
        const reason = answer.error || `the upload was refused (${request.status})`;
        say(reason);
        status.textContent = "refused: nothing was ingested";
        for (const tr of rows.children) tr.querySelector(".outcome").textContent = "not uploaded";
        return;
      }
      for (const bar of bars) bar.value = 50;
      for (const cell of rows.querySelectorAll(".outcome")) cell.textContent = "ingesting";
      jobLink.href = answer.job_url;
      jobLink.textContent = answer.job_id;
      status.textContent = "ingesting";
      refreshHistory();
      follow(answer.progress_url);
    });
    request.addEventListener("error", () => {
      say("The upload failed: the connection was lost.");
      status.textContent = "failed";
    });
    request.send(body);
  });
});
