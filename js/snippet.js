/*
 * The Footpath snippet, readable. Sites paste the minified form (snippet.min.js) into
 * every page, before anything else, with their collector URL and deployment id.
 *
 * It defines the global command function as a stub that queues its calls in `ac.q`,
 * remembers the load time in `ac.l`, and inserts one async <script> for the SDK. When
 * the SDK has loaded it replaces the stub and replays the queue in order.
 */
(function (w, d, tag, src, name) {
  w._footpathSdk = name;
  w[name] = w[name] || function () { (w[name].q = w[name].q || []).push(arguments); };
  w[name].l = +new Date();
  var script = d.createElement(tag);
  var first = d.getElementsByTagName(tag)[0];
  script.async = 1;
  script.src = src;
  first.parentNode.insertBefore(script, first);
})(window, document, 'script', 'COLLECTOR_URL/sdk/footpath.js', 'ac');
ac('init', 'DEPLOYMENT_ID');
