// The Train page's eval file: the chosen file's bytes go to /train/eval-set (the raw body, as the
// Contribute page sends files), which checks it as a contribution is checked and keeps it under
// its sha256; the form then carries only that hash, which the job config commits to.
"use strict";
(function () {
  const input = document.getElementById("eval_file");
  if (!input) return;
  const hash = document.getElementById("eval_sha256");
  const status = document.getElementById("eval-status");
  const report = document.getElementById("eval-report");
  const form = document.getElementById("train");

  function recheck() { form.dispatchEvent(new Event("change", { bubbles: true })); }

  input.addEventListener("change", async () => {
    hash.value = "";
    report.hidden = true;
    const f = input.files[0];
    if (!f) { status.textContent = ""; recheck(); return; }
    status.textContent = `checking ${f.name}…`;
    let body;
    try {
      const r = await fetch(`/train/eval-set?name=${encodeURIComponent(f.name)}`, {
        method: "POST", body: f, credentials: "same-origin",
        headers: { "Content-Type": "application/octet-stream", Accept: "application/json",
                   "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content },
      });
      body = await r.json().catch(() => ({ ok: false, report: `the server answered ${r.status}` }));
      if (!r.ok && body.ok === undefined) body = { ok: false, report: body.detail || body.message || `HTTP ${r.status}` };
    } catch (e) {
      body = { ok: false, report: String(e) };
    }
    if (body.ok) {
      hash.value = body.sha256;
      status.textContent = `Eval file ${f.name}: ${body.records} record(s), valid (sha256 ${body.sha256.slice(0, 18)}…).`;
    } else {
      status.textContent = `Eval file ${f.name} is not valid; fix it or choose another (the job is not posted with it):`;
      report.textContent = body.report || (body.errors || []).join("\n");
      report.hidden = false;
    }
    recheck();
  });
})();
