/* Junction dashboard: what every page needs.
 *
 * - htmx sends the session's CSRF token (from <meta name="csrf-token">) as X-CSRF-Token
 *   on every request it makes.
 * - A failed htmx request shows the error's one-line message (the API's error shape) in a
 *   toast instead of failing silently.
 * - window.Junction: csrfToken(), toast(text), post(url, body) (a same-origin fetch with
 *   the CSRF header and a JSON or form body) for pages that do not use htmx.
 * No inline script anywhere: the Content-Security-Policy forbids it.
 */
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  let toastTimer = null;
  function toast(text, kind) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.dataset.kind = kind || "error";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 6000);
  }

  function errorMessage(xhrOrText, status) {
    try {
      const body = JSON.parse(xhrOrText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "Request failed (HTTP " + status + ")";
  }

  async function post(url, body) {
    const headers = { "X-CSRF-Token": csrfToken() };
    let payload = body;
    if (body && !(body instanceof FormData) && !(body instanceof URLSearchParams)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const resp = await fetch(url, {
      method: "POST", headers: headers, body: payload,
      credentials: "same-origin", redirect: "follow",
    });
    if (!resp.ok) toast(errorMessage(await resp.clone().text(), resp.status));
    return resp;
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    toast(errorMessage(xhr.responseText, xhr.status));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The service did not answer; is it running?");
  });

  window.Junction = Object.assign(window.Junction || {}, {
    csrfToken: csrfToken, toast: toast, post: post,
  });
})();
