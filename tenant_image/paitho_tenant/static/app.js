/* Paitho tenant: the little script the pages need (loaded from our own origin; no inline
   script anywhere). Copy and download of the one-time passphrase; focus management after
   htmx swaps. */
(function () {
  "use strict";
  function status(text) {
    var el = document.getElementById("copy-status");
    if (el) { el.textContent = text; }
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLElement)) { return; }
    var copyId = target.getAttribute("data-copy");
    if (copyId) {
      var text = (document.getElementById(copyId) || {}).textContent || "";
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text.trim()).then(
          function () { status("Copied."); },
          function () { status("Copy failed: select the passphrase and copy it."); });
      } else {
        status("Select the passphrase and copy it.");
      }
    }
    var downloadId = target.getAttribute("data-download");
    if (downloadId) {
      var content = ((document.getElementById(downloadId) || {}).textContent || "").trim();
      var blob = new Blob([content + "\n"], { type: "text/plain" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = target.getAttribute("data-filename") || "passphrase.txt";
      document.body.appendChild(link);
      link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
      status("Downloaded.");
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var done = document.getElementById("import-done");
    if (done && event.detail && event.detail.target && event.detail.target.id === "import-progress") {
      done.setAttribute("tabindex", "-1");
      done.focus();
    }
  });
})();
