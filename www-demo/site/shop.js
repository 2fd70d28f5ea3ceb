// The demo shop's own behaviour. Every call to Footpath goes through the global `ac`
// that the snippet defines, exactly as a customer's site would do it.
(function () {
  var PRODUCTS = [
    { sku: 'BOOT-1', name: 'Ridge hiking boots', price: 139.0, description: 'Waterproof leather boots for rocky trails.' },
    { sku: 'BOOT-2', name: 'Meadow trail shoes', price: 89.5, description: 'Light shoes for dry paths.' },
    { sku: 'TENT-1', name: 'Summit two-person tent', price: 249.0, description: 'Three seasons, 2.1 kg.' },
    { sku: 'JACK-1', name: 'Storm shell jacket', price: 179.0, description: 'Breathable rain jacket.' },
    { sku: 'PACK-1', name: 'Daypack 24 l', price: 64.9, description: 'A pack for day hikes.' }
  ];
  function $(id) { return document.getElementById(id); }
  function cart() { try { return JSON.parse(localStorage.getItem('demo-cart') || '[]'); } catch (e) { return []; } }
  function saveCart(lines) { localStorage.setItem('demo-cart', JSON.stringify(lines)); showCount(); }
  function showCount() {
    var n = cart().reduce(function (sum, line) { return sum + line.quantity; }, 0);
    if ($('cart-count')) $('cart-count').textContent = String(n);
  }
  function productLink(p) {
    var li = document.createElement('li');
    var a = document.createElement('a');
    a.href = '/product?sku=' + encodeURIComponent(p.sku);
    a.textContent = p.name;
    a.className = 'product-link';
    li.appendChild(a);
    li.appendChild(document.createTextNode(' — ' + p.price.toFixed(2) + ' EUR'));
    return li;
  }

  function productsPage() {
    var q = new URLSearchParams(location.search).get('q') || '';
    $('search').value = q;
    var found = PRODUCTS.filter(function (p) { return !q || p.name.toLowerCase().indexOf(q.toLowerCase()) >= 0; });
    $('search-summary').textContent = q ? found.length + ' result(s) for "' + q + '"' : 'All products';
    found.forEach(function (p) { $('product-list').appendChild(productLink(p)); });
  }

  function productPage() {
    var sku = new URLSearchParams(location.search).get('sku');
    var p = PRODUCTS.filter(function (p) { return p.sku === sku; })[0] || PRODUCTS[0];
    document.title = p.name + ' — Trailhead Outfitters';
    $('product-name').textContent = p.name;
    $('product-description').textContent = p.description;
    $('product-price').textContent = p.price.toFixed(2) + ' EUR';
    $('add-to-cart').addEventListener('click', function () {
      var quantity = Math.max(1, Math.min(9, parseInt($('quantity').value, 10) || 1));
      var lines = cart();
      lines.push({ sku: p.sku, name: p.name, price: p.price, quantity: quantity });
      saveCart(lines);
      ac('record', 'cart_added', { sku: p.sku, productName: p.name, price: p.price, quantity: quantity }, function (error) {
        $('cart-message').textContent = error ? 'Added (not tracked: ' + error.message + ')' : 'Added to your cart.';
      });
    });
  }

  function checkoutPage() {
    var lines = cart();
    var total = 0;
    lines.forEach(function (line) {
      var li = document.createElement('li');
      li.textContent = line.quantity + ' × ' + line.name;
      $('cart-lines').appendChild(li);
      total += line.price * line.quantity;
    });
    $('cart-total').textContent = total.toFixed(2);
    $('place-order').addEventListener('click', function () {
      if (!lines.length) { $('order-message').textContent = 'Your cart is empty.'; return; }
      var orderId = 'ORD-' + Date.now();
      ac('record', 'order_completed', { orderId: orderId, value: Math.round(total * 100) / 100, currency: 'EUR', items: lines.length }, function (error) {
        $('order-message').textContent = error ? 'Order placed (not tracked).' : 'Thank you! Order ' + orderId + ' is confirmed.';
      });
      saveCart([]);
    });
  }

  function signinPage() {
    var who = localStorage.getItem('demo-user');
    $('signed-in-as').textContent = who ? 'Signed in as ' + who : 'Not signed in';
    $('signin-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var email = $('email').value.trim();
      var name = $('name').value.trim();
      var traits = { email: email };
      if (name) traits.displayName = name;
      // The shop's server vouches for who signed in with an identity token; without
      // one (a demo run with no identity secret) the identify is an unverified claim.
      fetch('/account/sign-in', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: email })
      }).then(function (response) {
        return response.ok ? response.json() : {};
      }, function () {
        return {};
      }).then(function (answer) {
        if (answer.identityToken) traits.identityToken = answer.identityToken;
        ac('identify', email, traits, function (error) {
          $('signed-in-as').textContent = error ? 'Signed in (not tracked)' : 'Signed in as ' + email;
        });
      });
      localStorage.setItem('demo-user', email);
    });
    $('signout-button').addEventListener('click', function () {
      ac('identify', null);
      localStorage.removeItem('demo-user');
      $('signed-in-as').textContent = 'Not signed in';
    });
  }

  showCount();
  var path = location.pathname.replace(/\.html$/, '');
  if (path === '/products') productsPage();
  if (path === '/product') productPage();
  if (path === '/checkout') checkoutPage();
  if (path === '/signin') signinPage();
})();
