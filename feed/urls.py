from django.urls import path, re_path

from . import api, views

USERNAME = r"(?P<username>[A-Za-z0-9_]{1,30})"

urlpatterns = [
    path("", views.home, name="home"),
    re_path(rf"^u/{USERNAME}/$", views.profile, name="profile"),
    re_path(rf"^u/{USERNAME}/followers/$", views.followers, name="followers"),
    re_path(rf"^u/{USERNAME}/following/$", views.following, name="following"),
    re_path(rf"^u/{USERNAME}/follow/$", views.follow, name="follow"),
    path("feed/newer/", views.home_newer, name="home-newer"),
    path("posts/<int:pk>/", views.post_detail, name="post-detail"),
    path("posts/<int:pk>/delete/", views.post_delete, name="post-delete"),
    path("posts/<int:pk>/like/", views.like, name="post-like"),
    path("posts/<int:pk>/mute/", views.post_mute, name="post-mute"),
    path("posts/<int:pk>/follow/", views.post_follow, name="post-follow"),
    path("posts/<int:pk>/edit/", views.post_edit, name="post-edit"),
    path("comments/<int:pk>/edit/", views.comment_edit, name="comment-edit"),
    path("comments/<int:pk>/delete/", views.comment_delete, name="comment-delete"),
    path("settings/profile/", views.edit_profile, name="edit-profile"),
    path("settings/password/", views.password_change, name="password-change"),
    path("people/", views.people_search, name="people-search"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/email/verify/<str:token>/", views.email_verify, name="email-verify"),
    path("settings/email/resend/", views.email_verify_resend, name="email-verify-resend"),
    path("accounts/password/reset/", views.password_reset, name="password-reset"),
    path("accounts/password/reset/sent/", views.password_reset_sent, name="password-reset-sent"),
    path("accounts/password/reset/complete/", views.password_reset_complete, name="password-reset-complete"),
    path("accounts/reset/<uidb64>/<token>/", views.password_reset_confirm, name="password-reset-confirm"),
]

api_urlpatterns = [
    path("users/", api.UsersView.as_view(), name="api-signup"),
    path("users/me/avatar/", api.AvatarView.as_view(), name="api-avatar"),
    path("users/me/email/", api.EmailView.as_view(), name="api-email"),
    path("users/me/email/verify/", api.EmailVerifyView.as_view(), name="api-email-verify"),
    path("uploads/", api.UploadView.as_view(), name="api-uploads"),
    re_path(rf"^users/{USERNAME}/$", api.UserDetailView.as_view(), name="api-user"),
    re_path(rf"^users/{USERNAME}/follow/$", api.FollowView.as_view(), name="api-follow"),
    path("posts/", api.PostListView.as_view(), name="api-posts"),
    path("posts/<int:pk>/", api.PostDetailView.as_view(), name="api-post"),
    path("posts/<int:pk>/comments/", api.CommentListView.as_view(), name="api-comments"),
    path("posts/<int:pk>/like/", api.LikeView.as_view(), name="api-like"),
    path("posts/<int:pk>/mute/", api.MuteView.as_view(), name="api-mute"),
    path("posts/<int:pk>/follow/", api.PostFollowView.as_view(), name="api-post-follow"),
    path("comments/<int:pk>/", api.CommentDetailView.as_view(), name="api-comment"),
    path("feed/", api.HomeFeedView.as_view(), name="api-feed"),
    path("search/", api.SearchView.as_view(), name="api-search"),
]
