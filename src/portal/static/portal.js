// The portal's one script, for what needs it: copy buttons and the Plex sign-in (a PIN made on
// the server, approved at plex.tv in another tab, then polled). Everything else is plain forms.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const input = button.parentElement.querySelector("input.copy");
  if (!input) return;
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, () => { input.select(); });
  } else {
    input.select();
    if (document.execCommand("copy")) done();
  }
});

const plex = document.getElementById("plex");
if (plex) {
  const status = document.getElementById("plex-status");
  plex.addEventListener("click", async () => {
    plex.disabled = true;
    status.textContent = " Waiting for plex.tv…";
    const started = await fetch("/login/plex", { method: "POST", credentials: "same-origin" });
    if (!started.ok) {
      status.textContent = " Plex sign-in is not available right now.";
      plex.disabled = false;
      return;
    }
    const { auth_url, id } = await started.json();
    window.open(auth_url, "_blank", "noopener");
    const poll = async () => {
      const answer = await fetch("/login/plex/poll?id=" + encodeURIComponent(id), { credentials: "same-origin" });
      const body = answer.ok ? await answer.json() : { status: "denied" };
      if (body.status === "ok") {
        window.location.assign(body.next || "/");
      } else if (body.status === "pending") {
        setTimeout(poll, 2000);
      } else {
        status.textContent = " Plex did not sign you in.";
        plex.disabled = false;
      }
    };
    setTimeout(poll, 2000);
  });
}
