# The demo's infrastructure: built-in terraform_data only, local backend (nothing to download).
resource "terraform_data" "app" {
  input = "v2"
}

resource "terraform_data" "web" {
  input = { replicas = 3 }
}

resource "terraform_data" "cache" {
  input = "redis"
}

output "release" {
  value = terraform_data.app.output
}
