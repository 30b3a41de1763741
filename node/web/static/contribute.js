// The Contribute page: the chosen file is checked by the server (the CLI's validation) and only a
// valid one enables the contribute buttons; contributing posts the same bytes again (the server
// validates again, stores them and plans the wallet's transactions, or signs with the keystore).
"use strict";
(function () {
  const form = document.getElementById("contribute");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const base = `/datanets/${form.dataset.datanet}/contribute`;
  const out = $("contribute-status"), file = $("file");
  const sendButtons = [$("send-wallet"), $("send-keystore")].filter(Boolean);
  let checked = null;  // the File that passed the check

  function query() {
    const f = file.files[0];
    return `name=${encodeURIComponent(f.name)}&stake=${encodeURIComponent($("stake").value.trim())}`;
  }

  function showCheck(r) {
    $("check-result").hidden = false;
    $("check-summary").textContent = r.ok
      ? `${r.records} record(s), ${r.bytes} bytes (${r.format}), sha256 ${r.sha256}: valid.`
      : "Not valid:";
    $("check-report").hidden = r.ok;
    $("check-report").textContent = r.report || "";
    const list = $("check-preview");
    list.textContent = "";
    for (const text of r.preview || []) {
      const li = document.createElement("li"), pre = document.createElement("pre");
      pre.className = "record";
      pre.textContent = text;
      li.append(pre);
      list.append(li);
    }
  }

  async function check() {
    checked = null;
    sendButtons.forEach((b) => (b.disabled = true));
    const f = file.files[0];
    if (!f) { dnWallet.status(out, "Choose a file first.", "error"); return; }
    dnWallet.status(out, "checking…");
    const r = await fetch(`${base}/check?${query()}`, {
      method: "POST", body: f, credentials: "same-origin",
      headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content, Accept: "application/json" },
    });
    let body;
    try { body = await dnWallet.answer(r); } catch (e) {
      if (!e.body) { dnWallet.status(out, e.message, "error"); return; }
      body = e.body;
    }
    showCheck(body);
    form.dataset.checked = body.ok ? "ok" : "errors";
    if (body.ok) {
      checked = f;
      sendButtons.forEach((b) => (b.disabled = false));
      dnWallet.status(out, "The file is valid: contribute it.", "ok");
    } else {
      dnWallet.status(out, "The file has errors: fix them and check again. Nothing was uploaded or staked.", "error");
    }
  }

  async function send(how) {
    if (!checked) return;
    sendButtons.forEach((b) => (b.disabled = true));
    try {
      const r = await dnWallet.act(how, { plan: `${base}/plan?${query()}`, keystore: `${base}/keystore?${query()}` },
        checked, (t) => dnWallet.status(out, t), "application/octet-stream");
      const id = r.contribution_id ? ` #${r.contribution_id}` : "";
      dnWallet.status(out, `Contribution${id} submitted (${r.cid}): it is pending until a curator decides.`, "ok");
      form.dataset.done = "true";
    } catch (e) {
      dnWallet.status(out, e.message || String(e), "error");
      sendButtons.forEach((b) => (b.disabled = false));
    }
  }

  $("check").addEventListener("click", check);
  file.addEventListener("change", () => { checked = null; form.dataset.checked = ""; sendButtons.forEach((b) => (b.disabled = true)); });
  for (const b of sendButtons) b.addEventListener("click", () => send(b.id === "send-keystore" ? "keystore" : "wallet"));
})();
