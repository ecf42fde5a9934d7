"""The managers' console: a web app served by the sync server (docs/console.md).

``accounts`` keeps manager accounts, one-time password links and browser sessions;
``security`` the cookie, CSRF and sign-in rules; ``assets`` finds the browser assets
``./dev setup`` installs from npm; ``web`` holds what every page shares; ``pages`` and one
module per area hold the routes, gathered by ``router`` (``dashboard`` the live dashboard, its
feeds in ``live``); ``templates`` the HTML."""
