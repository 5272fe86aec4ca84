// Assent proof-of-work for the hosted form (ALTCHA protocol): fetch a
// challenge, find the number, put the signed solution in the form.
(function () {
  "use strict";
  var form = document.querySelector("form[data-pow]");
  if (!form || !window.crypto || !window.crypto.subtle) { return; }
  var field = form.querySelector("input[name=altcha]");
  var button = form.querySelector("button[type=submit]");
  button.disabled = true;
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  fetch(form.getAttribute("data-pow"), { credentials: "omit" })
    .then(function (r) { return r.json(); })
    .then(async function (c) {
      var encoder = new TextEncoder();
      for (var n = 0; n <= c.maxnumber; n++) {
        var digest = await crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n));
        if (hex(digest) === c.challenge) {
          field.value = btoa(JSON.stringify({
            algorithm: c.algorithm, challenge: c.challenge, number: n,
            salt: c.salt, signature: c.signature
          }));
          button.disabled = false;
          return;
        }
      }
    });
})();
