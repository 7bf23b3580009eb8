"""Login to the console: local users, OpenID Connect and GitHub OAuth."""
