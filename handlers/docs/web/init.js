// Renders the app's own OpenAPI document. No validator badge: it would call
// validator.swagger.io, and the page makes no request outside this app.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    defaultModelsExpandDepth: 0,
  });
});
